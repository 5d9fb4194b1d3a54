"""Pipeline stages as plain functions over the content-addressed store (no Prefect here).

Each stage module defines `build(out, conf, inputs, progress, paths)`, which writes its output into
the staging directory `out` and returns a small JSON-able `info` dict for the manifest, and declares
the stage once as `STAGE = declaration.Stage(...)`: name, code version, config sections, upstream
inputs, fan-out, split into parts and report. registry.STAGES lists them in pipeline order; the plan,
the Prefect tasks, the UI artifacts and the CLI derive from it.
"""
