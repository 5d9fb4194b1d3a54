"""What every stage task does: run the stage against the store, with progress in logs and the UI."""
from __future__ import annotations

import sys
import time

from prefect import get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from gradiend_core.stages.runner import run_stage
from gradiend_core.store import open_store


class Progress:
    """Throttled progress: a Prefect log line and progress artifact, and a tqdm bar on a terminal."""

    def __init__(self, stage: str, every_s: float = 5.0):
        self.stage, self.every_s, self.last = stage, every_s, 0.0
        self.logger = get_run_logger()
        self.artifact_id = None
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=stage, unit="%", leave=False)

    def __call__(self, fraction: float, message: str = "") -> None:
        pct = max(0.0, min(100.0, 100.0 * fraction))
        if self.bar is not None:
            self.bar.n = round(pct, 1)
            self.bar.set_postfix_str(message, refresh=True)
        now = time.monotonic()
        if now - self.last < self.every_s and pct < 100.0:
            return
        self.last = now
        self.logger.info("%s: %.0f%% %s", self.stage, pct, message)
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(pct, description=f"{self.stage} progress")
            else:
                update_progress_artifact(self.artifact_id, pct)
        except Exception:  # progress must never fail a stage (e.g. no API reachable)
            pass

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def execute(module, store: str, conf: dict, paths: dict, inputs: dict, experiment: str = "") -> dict:
    progress = Progress(module.NAME)
    try:
        m = run_stage(open_store(store), module.NAME, module.VERSION, conf, inputs, module.build,
                      progress=progress, paths=paths)
    finally:
        progress.close()
    verb = "reused" if m["cached"] else f"computed in {m['seconds']:.1f}s"
    progress.logger.info("%s %s: %s", module.NAME, m["key"], verb)
    if experiment:
        from .artifacts import publish_stage_artifacts

        publish_stage_artifacts(m, experiment)
    return m


def step(label: str, fn, store: str, *args):
    """One step of a split stage (prepare, shard/part): fn(store, *args, progress) with a progress bar."""
    progress = Progress(label)
    try:
        return fn(open_store(store), *args, progress)
    finally:
        progress.close()


def finalize_step(fn, store: str, conf: dict, inputs: dict, plan: dict, parts: list[dict],
                  experiment: str = "") -> dict:
    """The last step of a split stage: publish through the store, then the stage's UI artifacts."""
    m = fn(open_store(store), conf, inputs, plan, parts)
    if experiment:
        from .artifacts import publish_stage_artifacts

        publish_stage_artifacts(m, experiment)
    return m
