"""Prefect task for the train-seed stage (see gradiend_core.stages.train_seed)."""
from prefect import task

from gradiend_core.stages import train_seed as stage

from ._stage import execute
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def train_seed(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)
