"""Prefect UI artifacts: each stage's report (built by gradiend_core.reports from stored results) and
one run report per flow run, handed to `prefect.artifacts`. Called inside tasks and flows only. A UI
artifact is decoration: a failure to build or create one is logged as a warning and never fails the
stage that produced the data."""
from __future__ import annotations

from gradiend_core.reports.markdown import artifact_key, artifact_keys, spec
from gradiend_core.reports.run import run_report_markdown

from .ui_calls import call, run_logger


def stage_artifact_content(decl, manifest: dict, report: dict | None, experiment: str) -> list[dict]:
    """Artifact specs [{kind, key, content, description}] of one stage output (reads its files)."""
    if decl.report is None:
        from gradiend_core.reports.markdown import header, info, main_key, md_table

        scalars = [{"field": k, "value": v} for k, v in info(manifest).items() if not isinstance(v, (dict, list))]
        md = header(manifest, manifest["stage"]) + "\n" + md_table(scalars)
        return [spec("markdown", main_key(manifest, experiment), md, manifest["stage"])]
    return decl.report.artifacts(manifest, report, experiment)


def stage_keys(decl, manifest: dict, experiment: str) -> list[str]:
    """The artifact keys a stage's report produces (cheap: reads no files)."""
    return artifact_keys(manifest, experiment, decl.report.extra if decl.report else ())


def _create(s: dict) -> str:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    if s["kind"] == "table":
        create_table_artifact(table=s["content"], key=s["key"], description=s["description"])
    else:
        create_markdown_artifact(markdown=s["content"], key=s["key"], description=s["description"])
    return s["key"]


def publish_specs(specs: list[dict]) -> list[str]:
    """Create each artifact; an API that does not answer turns artifacts off for the run (logged once,
    tasks/ui_calls.py): an artifact never fails nor holds up the stage that produced the data. Returns the
    keys created."""
    return [key for key in (call(_create, s, what=f"artifact {s['key']}") for s in specs) if key]


def publish_stage_artifacts(decl, manifest: dict, report: dict | None, experiment: str) -> list[str]:
    """Create this stage's UI artifacts (inside a Prefect task or flow run); returns their keys."""
    try:
        specs = stage_artifact_content(decl, manifest, report, experiment)
    except Exception as e:
        run_logger().warning("no artifacts for %s/%s: %s", manifest.get("stage"), manifest.get("key"), e)
        return []
    return publish_specs(specs)


def _ui_url() -> str | None:
    try:
        from prefect.settings import get_current_settings

        return get_current_settings().ui_url
    except Exception:
        return None


def publish_run_report(summary: dict, manifests: dict[str, dict], keys: dict[str, list[str]],
                       experiment: str) -> str:
    """Create the run report artifact (key `<slug>-report`); returns its key ("" if it failed)."""
    key = artifact_key(experiment, "report")
    try:
        md = run_report_markdown(summary, manifests, keys, experiment, ui_url=_ui_url())
    except Exception as e:
        run_logger().warning("could not build the run report: %s", e)
        return ""
    done = publish_specs([spec("markdown", key, md, f"gradiend-flow run report: {experiment}")])
    return done[0] if done else ""
