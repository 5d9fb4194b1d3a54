"""Prefect task for the pre-prune stage (see gradiend_core.stages.pre_prune)."""
from prefect import task

from gradiend_core.stages import pre_prune as stage

from ._stage import execute
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def pre_prune(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)
