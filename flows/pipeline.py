"""The flow: create data -> extract gradients -> pre-prune -> train per seed -> select seed ->
(post-prune) -> evaluate encoder -> decoder grid -> rewrite. Each stage is a cached, content-addressed task."""
from __future__ import annotations

import time

from prefect import flow, unmapped
from prefect.futures import PrefectFuture

from gradiend_core.config_loader import from_dict
from gradiend_core.experiment import ExperimentConfig
from gradiend_core.stages.plan import plan
from gradiend_core.store import open_store
from tasks.cache import results_dir
from tasks import (create_data, decoder_grid, evaluate_encoder, extract_gradients, post_prune, pre_prune,
                   prepare_model, rewrite, select_seed, train_seed)

# tasks pass manifests (small dicts), never arrays: Ray's minimum object store is plenty, and the
# default (30% of RAM in /dev/shm) would be reserved for nothing
RAY_OBJECT_STORE_BYTES = 100 * 2**20

TASKS = {t.name: t for t in (prepare_model.prepare_model, create_data.create_data,
                             extract_gradients.extract_gradients, pre_prune.pre_prune, train_seed.train_seed,
                             select_seed.select_seed, post_prune.post_prune, evaluate_encoder.evaluate_encoder,
                             decoder_grid.decoder_grid, rewrite.rewrite)}


def task_runner(cfg: ExperimentConfig):
    r = cfg.runner
    if r.kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=r.max_workers)
    if r.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if r.address:
            return DaskTaskRunner(address=r.address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": r.max_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    from prefect_ray import RayTaskRunner

    if r.address:  # an existing cluster brings its own resources (ray.init refuses num_cpus then)
        return RayTaskRunner(address=r.address)
    return RayTaskRunner(init_kwargs={"num_cpus": r.max_workers, "include_dashboard": False,
                                      "object_store_memory": RAY_OBJECT_STORE_BYTES})


@flow(name="gradiend-flow", log_prints=True)
def gradiend_flow(experiment: dict, store: str) -> dict:
    """Run (or reuse) every stage of one experiment; returns the run summary (JSON-able)."""
    t0 = time.perf_counter()
    cfg = from_dict(ExperimentConfig, experiment, "")
    steps = plan(cfg)
    futures: dict[str, PrefectFuture] = {}
    storage = results_dir(store)
    storage.mkdir(parents=True, exist_ok=True)
    seeds = [s for s in steps.values() if s.stage == "train-seed"]
    for s in steps.values():
        if s.stage == "train-seed":
            if s is seeds[0]:  # fan out all seeds at once
                t = TASKS["train-seed"].with_options(result_storage=storage)
                maps = t.map(store=unmapped(store), conf=[p.conf for p in seeds], paths=unmapped({}),
                             inputs=unmapped({n: futures[i] for n, i in s.inputs.items()}),
                             experiment=unmapped(cfg.name))
                futures.update({p.id: f for p, f in zip(seeds, maps)})
            continue
        if s.stage == "extract-gradients" and cfg.runner.extract_shards > 1:
            futures[s.id] = extract_in_shards(s, cfg, store, {n: futures[i] for n, i in s.inputs.items()})
            continue
        if s.stage == "decoder-grid" and cfg.runner.grid_parts > 1:
            futures[s.id] = grid_in_parts(s, cfg, store, {n: futures[i] for n, i in s.inputs.items()})
            continue
        t = TASKS[s.stage].with_options(result_storage=storage)
        futures[s.id] = t.submit(store=store, conf=s.conf, paths=s.paths,
                                 inputs={n: futures[i] for n, i in s.inputs.items()}, experiment=cfg.name)
    manifests = {sid: f.result() for sid, f in futures.items()}
    states = {sid: f.state for sid, f in futures.items()}
    summary = summarize(steps, manifests, states, time.perf_counter() - t0, store)
    from tasks.artifacts import publish_run_report

    publish_run_report(summary, manifests, cfg.name)
    return summary


def extract_in_shards(s, cfg: ExperimentConfig, store: str, inputs: dict) -> PrefectFuture:
    """extract-gradients as prepare -> one task per row shard -> finalize (see `in_parts`)."""
    from tasks.extract_gradients import extract_finalize, extract_prepare, extract_shard

    return in_parts(s, cfg, store, inputs, (extract_prepare, extract_shard, extract_finalize),
                    cfg.runner.extract_shards, "blocks")


def grid_in_parts(s, cfg: ExperimentConfig, store: str, inputs: dict) -> PrefectFuture:
    """decoder-grid as prepare -> one task per part of the cells -> finalize (see `in_parts`)."""
    from tasks.decoder_grid import grid_finalize, grid_part, grid_prepare

    return in_parts(s, cfg, store, inputs, (grid_prepare, grid_part, grid_finalize), cfg.runner.grid_parts, "parts")


def in_parts(s, cfg: ExperimentConfig, store: str, inputs: dict, steps: tuple, count: int,
             units: str) -> PrefectFuture:
    """One stage as prepare -> one task per entry of plan[units] (fanned out by the task runner) -> finalize.

    The output's lock is held here, in the flow process, from prepare to finalize: the plan (and for
    extraction the staging dir) outlives each task. Only stages that everything after them needs
    (extraction) or that only the last stage needs (the grid: rewrite) go this way, so waiting for
    the output here costs no parallelism.
    """
    prepare, step, finalize = steps
    with open_store(store).lock(s.stage, s.key):
        plan = prepare.submit(store=store, conf=s.conf, inputs=inputs, count=count).result()
        parts = [] if "cached" in plan else step.map(
            store=unmapped(store), conf=unmapped(s.conf), inputs=unmapped(inputs), plan=unmapped(plan),
            index=list(range(len(plan[units]))))
        results = [p.result() for p in parts]  # a failed part raises its own error here
        done = finalize.submit(store=store, conf=s.conf, inputs=inputs, plan=plan, parts=results,
                               experiment=cfg.name, wait_for=parts)
        done.wait()
    return done


def summarize(steps, manifests: dict, states: dict, seconds: float, store: str) -> dict:
    stages = {}
    for sid, m in manifests.items():
        cached = bool(m.get("cached")) or states[sid].name == "Cached"
        stages[sid] = {"key": m["key"], "cached": cached, "seconds": 0.0 if cached else m.get("seconds", 0.0)}
        for fanned in ("shards", "parts"):  # the tasks a fanned-out stage ran as
            if not cached and m.get(fanned):
                stages[sid][fanned] = m[fanned]
    ev = manifests["evaluate-encoder"]["info"]
    rw = manifests["rewrite"]["info"]
    sel = rw["selected"]
    where = open_store(store)
    return {
        "store": where.location,
        "stages": stages,
        "seconds": round(seconds, 2),
        "metrics": {
            "encoder_correlation": ev["correlation"], "encoder_split": ev["split"],
            "best_seed": manifests["select-seed"]["info"]["best_seed"],
            "converged_seeds": manifests["select-seed"]["info"]["convergent_count"],
            "target_class": rw["target_class"], "direction": rw["direction"],
            "selected": {k: sel[k] for k in ("feature_factor", "learning_rate", "value", "base_value", "lms",
                                             "base_lms")},
        },
        "rewritten_model": f"{where.where('rewrite', manifests['rewrite']['key'])}/model",
    }
