"""Prefect task for the create-data stage (see gradiend_core.stages.create_data)."""
from prefect import task

from gradiend_core.stages import create_data as stage

from ._stage import execute
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def create_data(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)
