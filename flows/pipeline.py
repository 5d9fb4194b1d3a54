"""The flow: create data -> extract gradients -> pre-prune -> train per seed -> select seed ->
(post-prune) -> evaluate encoder -> decoder grid -> rewrite. Each stage is a cached, content-addressed task."""
from __future__ import annotations

import time

from prefect import flow, unmapped
from prefect.futures import PrefectFuture

from gradiend_core.config_loader import from_dict
from gradiend_core.experiment import ExperimentConfig
from gradiend_core.stages.plan import StagePlan, plan, shared_groups
from gradiend_core.store import open_store
from gradiend_core.suite import pair_label
from tasks.cache import results_dir
from tasks import ui_calls
from tasks.stage import report_task, shared_task, split_tasks, stage_task

# tasks pass manifests (small dicts), never arrays: Ray's minimum object store is plenty, and the
# default (30% of RAM in /dev/shm) would be reserved for nothing
RAY_OBJECT_STORE_BYTES = 100 * 2**20


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
    ui_calls.reset()  # this run's API may answer where an earlier run's did not
    cfg = from_dict(ExperimentConfig, experiment, "")
    steps = plan(cfg)
    futures: dict[str, PrefectFuture] = {}
    reports: dict[str, PrefectFuture | dict] = {}  # plots, drawn beside the next stages (nothing waits for them)
    storage = results_dir(store)
    storage.mkdir(parents=True, exist_ok=True)
    shared: dict[str, PrefectFuture | None] = {}  # share id -> its one-pass task (None: nothing to build)
    for group in _groups(steps):
        after = [f for f in (share(p, steps, store, futures, shared) for p in group) if f is not None]
        done = submit(group, cfg, store, storage, futures, after)
        futures.update(done)
        reports.update(draw(group, cfg, store, done))
    manifests = {sid: f.result() for sid, f in futures.items()}
    states = {sid: f.state for sid, f in futures.items()}
    drawn = {sid: r if isinstance(r, dict) else r.result() for sid, r in reports.items()}
    drawn = {sid: r for sid, r in drawn.items() if r}
    summary = summarize(steps, manifests, states, drawn, time.perf_counter() - t0, store)
    mark_shared(summary, steps, manifests, {g: f.result() for g, f in shared.items() if f is not None})
    from tasks.artifacts import publish_run_report, stage_keys

    keys = {sid: stage_keys(steps[sid].decl, m, label(cfg, steps[sid])) for sid, m in manifests.items()}
    publish_run_report(summary, manifests, keys, cfg.name)
    return summary


def _groups(steps: dict[str, StagePlan]) -> list[list[StagePlan]]:
    """Plan steps grouped by stage (and by pair in a suite), in plan order: a fanned-out stage's steps
    are submitted at once."""
    groups: dict[tuple, list[StagePlan]] = {}
    for p in steps.values():
        groups.setdefault((p.stage, p.pair), []).append(p)
    return list(groups.values())


def share(p: StagePlan, steps: dict, store: str, futures: dict, shared: dict) -> PrefectFuture | None:
    """The one-pass task building p's share group (Stage.share), submitted with the group's first step
    when some member's output is missing; p's own task waits for it, then finds its output built."""
    if p.share is None:
        return None
    if p.share not in shared:
        members = shared_groups(steps)[p.share]
        if any(stale(store, m.stage, m.key) for m in members):
            shared[p.share] = shared_task(p.stage).submit(
                store=store, confs=[m.conf for m in members], label=p.share,
                inputs={n: futures[i] for n, i in p.inputs.items()})
        else:
            shared[p.share] = None
    return shared[p.share]


def mark_shared(summary: dict, steps: dict, manifests: dict, records: dict) -> None:
    """The steps a one-pass task built count as built (their own task only found them), and `shared`
    says what each such task did: its steps, the keys it built, the rows computed once, the union dims."""
    if not records:
        return
    groups = shared_groups(steps)
    for g, r in records.items():
        for p in groups[g]:
            if p.key in r["built"]:
                summary["stages"][p.id].update(cached=False, seconds=manifests[p.id].get("seconds", 0.0), shared=g)
    summary["shared"] = {g: {"steps": [p.id for p in groups[g]], **r} for g, r in records.items()}


def label(cfg: ExperimentConfig, p: StagePlan) -> str:
    """The experiment name a step publishes its UI artifacts under (a suite's pair: its own keys)."""
    return cfg.name if p.pair is None else pair_label(cfg.name, p.pair)


def submit(group: list[StagePlan], cfg: ExperimentConfig, store: str, storage, futures: dict,
           after: list | None = None) -> dict:
    """Futures of one stage's steps: one task each (mapped when fanned out), or prepare -> parts ->
    finalize when the stage is declared with a Split and the runner asks for more than one part."""
    s = group[0]
    inputs = {n: futures[i] for n, i in s.inputs.items()}
    if s.decl.split is not None and s.decl.split.count(cfg) > 1:
        for f in after or []:  # the group's one-pass task built it (prepare then finds it cached)
            f.wait()
        return {s.id: in_parts(s, cfg, store, inputs)}
    # an output missing or damaged in the store: run the task even if Prefect has a record of its key
    refresh = any(stale(store, p.stage, p.key) for p in group)
    t = stage_task(s.stage).with_options(result_storage=storage, refresh_cache=refresh)
    if s.decl.fanout is None:
        return {s.id: t.submit(store=store, conf=s.conf, paths=s.paths, inputs=inputs, experiment=label(cfg, s),
                               wait_for=after or None)}
    maps = t.map(store=unmapped(store), conf=[p.conf for p in group], paths=unmapped(s.paths),
                 inputs=unmapped(inputs), experiment=unmapped(label(cfg, s)))
    return {p.id: f for p, f in zip(group, maps)}


def draw(group: list[StagePlan], cfg: ExperimentConfig, store: str, futures: dict) -> dict:
    """Report tasks (plots from the stored results) of one stage's steps, if the stage draws any; a
    report already in the store needs no task (its key is the plan's: the stage key and the plot code)."""
    decl = group[0].decl
    if decl.report is None or decl.report.draw is None:
        return {}
    t = report_task(decl.name)
    return {p.id: t.submit(store=store, manifest=futures[p.id], experiment=label(cfg, p))
            if stale(store, decl.report_stage, p.report_key) else {"key": p.report_key, "cached": True}
            for p in group}


def stale(store: str, stage: str, key: str) -> bool:
    """The output is not in the store as this host last verified it (missing, damaged, rewritten, or a URL
    store's output this host never fetched): a Prefect record of it must not be used, the task runs and
    reuses, fetches or rebuilds it. Reads only (Store.verified)."""
    return not open_store(store).verified(stage, key)


def in_parts(s: StagePlan, cfg: ExperimentConfig, store: str, inputs: dict) -> PrefectFuture:
    """One stage as prepare -> one task per entry of plan[units] (fanned out by the task runner) -> finalize.

    The output's lock is held here, in the flow process, from prepare to finalize: the plan (and for
    extraction the staging dir) outlives each task. Only stages that everything after them needs
    (extraction) or that only the last stage needs (the grid: rewrite) are split, so waiting for the
    output here costs no parallelism.
    """
    prepare, part, finalize = split_tasks(s.stage)
    sp = s.decl.split
    with open_store(store).lock(s.stage, s.key):
        work = prepare.submit(store=store, conf=s.conf, inputs=inputs, count=sp.count(cfg)).result()
        parts = [] if "cached" in work else part.map(
            store=unmapped(store), conf=unmapped(s.conf), inputs=unmapped(inputs), plan=unmapped(work),
            index=list(range(len(work[sp.units]))))
        results = [p.result() for p in parts]  # a failed part raises its own error here
        done = finalize.submit(store=store, conf=s.conf, inputs=inputs, plan=work, parts=results,
                               experiment=label(cfg, s), wait_for=parts)
        done.wait()
    return done


SELECTED_KEYS = ("feature_factor", "learning_rate", "value", "base_value", "lms", "base_lms", "change", "change_lo",
                 "change_hi", "lms_diff", "lms_diff_lo", "lms_diff_hi", "lms_p", "policy")


def summarize(steps, manifests: dict, states: dict, drawn: dict, seconds: float, store: str) -> dict:
    """The run summary: every step (`stages`), the headline metrics and the rewritten models; a suite's
    (a `compare` step) has `pairs` (each pair's metrics, also `metrics`) and `comparison` instead."""
    stages = stage_summary(steps, manifests, states, drawn)
    where = open_store(store)
    rewrites = [rewrite_entry(sid, manifests[sid], where) for sid, p in steps.items() if p.stage == "rewrite"]
    out = {"store": where.location, "stages": stages, "seconds": round(seconds, 2), "rewrites": rewrites,
           "warnings": warnings(manifests)}
    if "compare" in steps:
        return {**out, **suite_summary(steps, manifests, where)}
    first = rewrites[0]
    # the first rewrite request (every request: `rewrites`)
    metrics = {**pair_metrics(manifests["evaluate-encoder"], manifests["select-seed"]),
               "target_class": first["class"], "direction": first["direction"], "selected": first["selected"]}
    return {**out, "metrics": metrics, "rewritten_model": first["model"]}


def warnings(manifests: dict) -> list[str]:
    """The warnings the steps recorded in their manifests (e.g. a rewrite that changed no weight, a seed
    chosen without evaluation), in plan order: cached outputs repeat theirs."""
    return [f"{sid}: {m['info']['warning']}" for sid, m in manifests.items() if (m.get("info") or {}).get("warning")]


def pair_metrics(evaluate: dict, select: dict) -> dict:
    ev = evaluate["info"]
    return {"encoder_correlation": ev["correlation"], "encoder_split": ev["split"],
            "best_seed": select["info"]["best_seed"], "converged_seeds": select["info"]["convergent_count"]}


def suite_summary(steps, manifests: dict, where) -> dict:
    """Each pair's metrics (its evaluate-encoder and select-seed steps) and the comparison's tables."""
    c = steps["compare"]
    pairs = {}
    for pid in c.conf["pairs"]:
        ids = [i for i in steps if steps[i].pair == pid]
        select = next(i for i in ids if steps[i].stage == "select-seed")
        pairs[pid] = {**pair_metrics(manifests[c.inputs[f"encoder_{pid}"]], manifests[select]), "steps": ids}
    m = manifests["compare"]
    comparison = {"id": "compare", "key": m["key"], "dir": where.where("compare", m["key"]),
                  "tables": sorted(m["info"]["rows"])}
    return {"pairs": pairs, "metrics": {pid: {k: v for k, v in p.items() if k != "steps"} for pid, p in pairs.items()},
            "comparison": comparison}


def stage_summary(steps, manifests: dict, states: dict, drawn: dict) -> dict:
    """plan id -> stage, key, cached, seconds (and shards / parts, report)."""
    stages = {}
    for sid, m in manifests.items():
        cached = bool(m.get("cached")) or states[sid].name == "Cached"
        stages[sid] = {"stage": steps[sid].stage, "key": m["key"], "cached": cached,
                       "seconds": 0.0 if cached else m.get("seconds", 0.0)}
        for fanned in ("shards", "parts"):  # the tasks a fanned-out stage ran as
            if not cached and m.get(fanned):
                stages[sid][fanned] = m[fanned]
        if sid in drawn:  # the plots drawn from the stored results
            stages[sid]["report"] = drawn[sid]
    return stages


def rewrite_entry(sid: str, manifest: dict, where) -> dict:
    """One rewritten model of the run: its step, request, selected cell (with intervals) and directory."""
    i = manifest["info"]
    sel = i["selected"]
    return {"id": sid, "class": i["target_class"], "direction": i["direction"],
            "selected": {k: sel[k] for k in SELECTED_KEYS if k in sel},
            "model": f"{where.where('rewrite', manifest['key'])}/model"}
