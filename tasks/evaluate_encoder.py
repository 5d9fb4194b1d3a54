"""Prefect task for the evaluate-encoder stage (see gradiend_core.stages.evaluate_encoder)."""
from prefect import task

from gradiend_core.stages import evaluate_encoder as stage

from ._stage import execute
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def evaluate_encoder(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)
