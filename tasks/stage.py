"""The Prefect tasks of every declared stage, made from the declarations (gradiend_core.stages.registry).

`stage_task(name)`: one cached task that runs the stage against the store (reuse or build), then its
report (plots drawn from the stored results), then publishes its UI artifacts. A stage declared with
a Split also gets `split_tasks(name)`: prepare, part and finalize (not cached by Prefect: prepare
finds a valid output in the store itself, and the steps exchange plans, never results worth keeping).
Tasks pass manifests (small dicts: paths, digests, shapes), never tensors or DataFrames.
"""
from __future__ import annotations

import sys
import threading
import time
from functools import lru_cache

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from gradiend_core import stop
from gradiend_core.store import open_store
from gradiend_core.stages.registry import stage
from gradiend_core.stages.runner import run_report, run_stage

from .cache import StageCachePolicy
from .ui_calls import ProgressArtifact


class Progress:
    """Throttled progress: a Prefect log line and progress artifact (sent in the background: a slow or gone
    API never holds up the stage, tasks/ui_calls.py), and a tqdm bar on a terminal. Each call is a safe
    point where a requested stop ends the step (gradiend_core.stop)."""

    def __init__(self, stage: str, every_s: float = 5.0):
        self.stage, self.every_s, self.last = stage, every_s, 0.0
        self.logger = get_run_logger()
        self.artifact = ProgressArtifact(f"{stage} progress")
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=stage, unit="%", leave=False)

    def __call__(self, fraction: float, message: str = "") -> None:
        stop.reached(self.stage, message)
        pct = max(0.0, min(100.0, 100.0 * fraction))
        if self.bar is not None:
            self.bar.n = round(pct, 1)
            self.bar.set_postfix_str(message, refresh=True)
        now = time.monotonic()
        if now - self.last < self.every_s and pct < 100.0:
            return
        self.last = now
        self.logger.info("%s: %.0f%% %s", self.stage, pct, message)
        self.artifact.update(pct)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def execute(name: str, store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    """Run one stage (reuse or build); a stage without plots publishes its UI artifacts here, a stage
    with plots in its report task (`report_task`), once they are drawn."""
    decl = stage(name)
    stop.reached()  # a stop requested before this stage started: it does not start
    if draws(decl):
        warm_up_plotting()
    progress = Progress(name)
    try:
        m = run_stage(open_store(store), decl.name, decl.version, conf, inputs, decl.build, progress=progress,
                      paths=paths, resumable=decl.resumable)
    finally:
        progress.close()
    verb = "reused" if m["cached"] else f"computed in {m['seconds']:.1f}s"
    progress.logger.info("%s %s: %s", name, m["key"], verb)
    if (m.get("info") or {}).get("warning"):  # a result the user must not take at face value
        progress.logger.warning("%s %s: %s", name, m["key"], m["info"]["warning"])
    if experiment and not draws(decl):
        from .artifacts import publish_stage_artifacts

        publish_stage_artifacts(decl, m, None, experiment)
    return m


def draws(decl) -> bool:
    """The stage has plots, drawn by its report task."""
    return decl.report is not None and decl.report.draw is not None


def report(name: str, store: str, manifest: dict, experiment: str = "") -> dict:
    """Draw the stage's plots from its stored results unless they are in the store already, then publish
    its UI artifacts; returns {key, cached} of the report output. A report is decoration: a failure is
    logged as a warning and never fails the run."""
    decl = stage(name)
    stop.reached()
    s = open_store(store)
    try:
        r = run_report(s, decl, manifest)
    except Exception as e:
        get_run_logger().warning("no report for %s/%s: %s", name, manifest.get("key"), e)
        r = None
    if experiment:
        from .artifacts import publish_stage_artifacts

        publish_stage_artifacts(decl, manifest, r, experiment)
    return {"key": r["key"], "cached": r["cached"]} if r else {}


_WARM = threading.Lock()
_warming: list[threading.Thread] = []


def warm_up_plotting() -> None:
    """Once per process, render a tiny figure on a background thread (plots.warm_up): the first plot of
    a process costs ~0.45 s more than later ones, and this runs while the first plotting stage computes
    (torch ops release the GIL). Only a head start: a failure here is left to the real plot to report."""
    with _WARM:
        if _warming:
            return

        def warm() -> None:
            try:
                from gradiend_core.plots import warm_up

                warm_up()
            except Exception:
                pass

        _warming.append(threading.Thread(target=warm, name="warm-plots", daemon=True))
        _warming[0].start()


@lru_cache(maxsize=None)
def stage_task(name: str):
    """The Prefect task of stage `name` (one per declared stage, cached by its content address)."""
    decl = stage(name)

    def run(store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
        return execute(name, store, conf, paths, inputs, experiment)

    run.__name__ = run.__qualname__ = name.replace("-", "_")
    policy = StageCachePolicy(stage=decl.name, version=decl.version)
    return task(run, name=decl.name, cache_policy=policy, persist_result=True, log_prints=True)


@lru_cache(maxsize=None)
def report_task(name: str):
    """The Prefect task that draws stage `name`'s plots (`<stage>-report`); the next stages do not wait
    for it, so plotting overlaps their work."""
    decl = stage(name)

    def run(store: str, manifest: dict, experiment: str = "") -> dict:
        return report(name, store, manifest, experiment)

    run.__name__ = run.__qualname__ = decl.report_stage.replace("-", "_")
    # submitted only when the report is not in the store (the flow checks): nothing for Prefect to cache
    return task(run, name=decl.report_stage, cache_policy=NO_CACHE)


@lru_cache(maxsize=None)
def shared_task(name: str):
    """The task that builds several steps of stage `name` in one pass (Stage.share: a suite's
    extractions). Not cached by Prefect: it checks the store itself and builds only what is missing;
    each step's own task then finds its output there."""
    decl = stage(name)

    def run(store: str, confs: list[dict], inputs: dict, label: str) -> dict:
        from gradiend_core.stages.plan import StagePlan, run_shared

        members = [StagePlan(label, decl, c, {}) for c in confs]
        progress = Progress(label)
        try:
            record = run_shared(open_store(store), members, inputs, progress)
        finally:
            progress.close()
        progress.logger.info("%s: built %d of %d outputs, %d rows computed once", label, len(record["built"]),
                             len(confs), record["rows_computed"])
        return record

    run.__name__ = run.__qualname__ = f"{name}_shared".replace("-", "_")
    return task(run, name=f"{name}-shared", cache_policy=NO_CACHE)


@lru_cache(maxsize=None)
def split_tasks(name: str):
    """(prepare, part, finalize) tasks of a stage declared with a Split."""
    decl = stage(name)
    sp = decl.split

    def prepare(store: str, conf: dict, inputs: dict, count: int) -> dict:
        return step(f"{name} prepare", sp.prepare, store, decl, conf, inputs, count)

    def part(store: str, conf: dict, inputs: dict, plan: dict, index: int) -> dict:
        return step(f"{name} part {index}", sp.part, store, conf, inputs, plan, index)

    def finalize(store: str, conf: dict, inputs: dict, plan: dict, parts: list[dict], experiment: str = "") -> dict:
        m = sp.finalize(open_store(store), conf, inputs, plan, parts)
        if experiment and not draws(decl):
            from .artifacts import publish_stage_artifacts

            publish_stage_artifacts(decl, m, None, experiment)
        return m

    names = ("prepare", sp.part.__name__, "finalize")  # e.g. extract-gradients-shard, decoder-grid-part
    steps = (prepare, part, finalize)
    return tuple(task(fn, name=f"{name}-{n}", cache_policy=NO_CACHE) for fn, n in zip(steps, names))


def step(label: str, fn, store: str, *args):
    """One step of a split stage (prepare, part): fn(store, *args, progress) with a progress bar."""
    stop.reached()
    progress = Progress(label)
    try:
        return fn(open_store(store), *args, progress)
    finally:
        progress.close()
