"""Prefect tasks for the decoder-grid stage (see gradiend_core.stages.decoder_grid): one task, or, with
`runner.grid_parts` > 1, prepare -> one task per part of the cells -> finalize
(gradiend_core.stages.grid_parts). The part steps are not cached by Prefect: prepare finds a valid
output in the store itself, and the steps exchange plans and cell records, never results worth keeping."""
from prefect import task
from prefect.cache_policies import NO_CACHE

from gradiend_core.stages import decoder_grid as stage
from gradiend_core.stages import grid_parts

from ._stage import execute, finalize_step, step
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def decoder_grid(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)


@task(name=f"{stage.NAME}-prepare", cache_policy=NO_CACHE)
def grid_prepare(store: str, conf: dict, inputs: dict, count: int) -> dict:
    return step(f"{stage.NAME} prepare", grid_parts.prepare, store, conf, inputs, count)


@task(name=f"{stage.NAME}-part", cache_policy=NO_CACHE)
def grid_part(store: str, conf: dict, inputs: dict, plan: dict, index: int) -> dict:
    return step(f"{stage.NAME} part {index}", grid_parts.part, store, conf, inputs, plan, index)


@task(name=f"{stage.NAME}-finalize", cache_policy=NO_CACHE)
def grid_finalize(store: str, conf: dict, inputs: dict, plan: dict, parts: list[dict],
                  experiment: str = "") -> dict:
    return finalize_step(grid_parts.finalize, store, conf, inputs, plan, parts, experiment)
