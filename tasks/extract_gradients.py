"""Prefect tasks for the extract-gradients stage (see gradiend_core.stages.extract_gradients): one task,
or, with `runner.extract_shards` > 1, prepare -> one task per row shard -> finalize
(gradiend_core.stages.extract_shards). The sharded steps are not cached by Prefect: prepare finds a
valid output in the store itself, and the steps exchange plans, never results worth keeping."""
from prefect import task
from prefect.cache_policies import NO_CACHE

from gradiend_core.stages import extract_gradients as stage
from gradiend_core.stages import extract_shards as shards

from ._stage import execute, finalize_step, step
from .cache import StageCachePolicy


@task(name=stage.NAME, cache_policy=StageCachePolicy(stage=stage.NAME, version=stage.VERSION),
      persist_result=True, log_prints=True)
def extract_gradients(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    return execute(stage, store, conf, paths, inputs, experiment)


@task(name=f"{stage.NAME}-prepare", cache_policy=NO_CACHE)
def extract_prepare(store: str, conf: dict, inputs: dict, count: int) -> dict:
    return step(f"{stage.NAME} prepare", shards.prepare, store, conf, inputs, count)


@task(name=f"{stage.NAME}-shard", cache_policy=NO_CACHE)
def extract_shard(store: str, conf: dict, inputs: dict, plan: dict, index: int) -> dict:
    return step(f"{stage.NAME} shard {index}", shards.shard, store, conf, inputs, plan, index)


@task(name=f"{stage.NAME}-finalize", cache_policy=NO_CACHE)
def extract_finalize(store: str, conf: dict, inputs: dict, plan: dict, parts: list[dict],
                     experiment: str = "") -> dict:
    return finalize_step(shards.finalize, store, conf, inputs, plan, parts, experiment)
