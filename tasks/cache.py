"""Prefect cache keys that are the store's content addresses, computed from the task's inputs alone.

A stage task's key is its output's key (stage, code version, config slice, upstream keys); a report
task's key is its report output's key (the stage output's key and the plotting code's version). No
file is read, written or deleted to compute one. Prefect's record of a key only saves running the
task: the flow (flows/pipeline.py) asks the store, before submitting, whether each output is still
there and valid (`Store.status`, which reads only), and runs the task with refresh_cache when it is
not, so a stale record is never returned for a deleted or corrupted output.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from prefect.cache_policies import CachePolicy

from gradiend_core.stages.plan import report_key
from gradiend_core.stages.registry import stage
from gradiend_core.stages.runner import key_for
from gradiend_core.store import open_store

RESULTS_DIR = ".prefect-results"


def results_dir(store: str) -> Path:
    return open_store(store).root / RESULTS_DIR  # this host's directory of the store (a URL store: its cache)


@dataclass
class StageCachePolicy(CachePolicy):
    stage: str = ""
    version: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        return f"{self.stage}-{key_for(self.stage, self.version, inputs['conf'], inputs.get('inputs') or {})}"


@dataclass
class ReportCachePolicy(CachePolicy):
    """A report task's key: its report output's key. A plot change makes another key, so the task
    runs and draws again; the stage itself is never re-run for it."""
    stage: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        decl = stage(self.stage)
        return f"{decl.report_stage}-{report_key(decl, inputs['manifest']['key'])}"
