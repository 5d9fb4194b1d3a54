"""Deployment entry point: the pipeline parameterised by an experiment *file*, for work pools and schedules.

A deployment's parameters are stored as JSON in the Prefect database and shown as a form in the UI, so
the scheduled flow takes a path to the experiment YAML (plus optional `--set`-style overrides) instead
of the whole experiment dict. It resolves the config and picks the task runner exactly like
`flows.api.run_experiment`, then runs `gradiend_flow` as a subflow (the runner is only known once the
file is read). Relative paths resolve against the worker's working directory, which the deployment's
pull step sets to the repository root (deployments/prefect.yaml).

    prefect --no-prompt deploy --prefect-file deployments/prefect.yaml --all   # see deployments/README.md
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow

from gradiend_core.config_loader import to_dict

from . import env
from .api import preflight, resolve_config

DEFAULT_EXPERIMENT = "examples/pronoun_number.yaml"


@flow(name="gradiend-flow-from-file", log_prints=True, persist_result=True)
def gradiend_flow_from_file(experiment_file: str = DEFAULT_EXPERIMENT, store: str = "store",
                            overrides: list[str] | None = None) -> dict:
    """Load `experiment_file` (+ `overrides`, e.g. ["train.max_steps=50"]) and run the pipeline into `store`
    (a directory, or an fsspec URL such as s3://bucket/prefix).

    The returned summary is persisted (under the worker's $PREFECT_HOME/storage) so API clients can read it
    from the flow run's state; the stage outputs themselves live in `store`.
    """
    env.apply()  # before the pipeline's imports pull in transformers
    from .pipeline import gradiend_flow, task_runner

    from gradiend_core.store import open_store

    cfg = resolve_config(experiment_file, list(overrides or []))
    store_dir = open_store(store).location  # a directory (made absolute) or a URL, as given
    preflight(cfg, store_dir)  # config + store problems fail the run before any stage starts
    print(f"experiment {cfg.name!r} from {Path(experiment_file).resolve()} -> store {store_dir} "
          f"({cfg.runner.kind} runner)")
    run = gradiend_flow.with_options(task_runner=task_runner(cfg))
    return run(experiment=to_dict(cfg), store=store_dir)
