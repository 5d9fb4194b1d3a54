"""Prefect task for the decoder-grid stage (see gradiend_core.stages.decoder_grid)."""
from prefect import task

from gradiend_core.stages import decoder_grid as stage

from ._stage import execute
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def decoder_grid(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)
