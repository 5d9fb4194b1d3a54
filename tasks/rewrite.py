"""Prefect task for the rewrite stage (see gradiend_core.stages.rewrite)."""
from prefect import task

from gradiend_core.stages import rewrite as stage

from ._stage import execute
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def rewrite(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)
