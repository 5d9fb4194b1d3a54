"""How stages are shown: plots drawn from stored results and UI artifact content (no Prefect here).

One module per stage that has a report (`artifacts(manifest, report_manifest, experiment)` and, where
it plots, `draw(manifest, out)`), plus the helpers they share (markdown, images) and the run report.
The stage declarations (gradiend_core.stages.*.STAGE) name them; tasks/artifacts.py publishes them.
"""
