"""Pipeline stages as plain functions over the content-addressed store (no Prefect here).

Each stage module defines NAME, VERSION (bump when its output semantics change), `config_slice(cfg)`
(exactly the settings it reads) and `build(out, conf, inputs, progress)` which writes its output into
the staging directory `out` and returns a small JSON-able `info` dict for the manifest.
"""
