"""Prefect task for the extract-gradients stage (see gradiend_core.stages.extract_gradients)."""
from prefect import task

from gradiend_core.stages import extract_gradients as stage

from ._stage import execute
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def extract_gradients(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)
