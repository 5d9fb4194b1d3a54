"""A Prefect cache policy keyed exactly like the artifact store, computed without side effects.

The key is the stage's content address (stage, code version, config slice, upstream keys) plus the
store's fingerprint of the published output (its manifest, and each file's size and change stamp as
the store sees them without downloading): tensors, DataFrames and paths are never hashed. When the output is not
cached (missing, or broken as far as `status` can tell) there is no key, so Prefect runs the task
and run_stage rebuilds or reuses it. A republished or rewritten output has another fingerprint, so
a stale Prefect record is never returned for it; computing the key reads only (no download, no
write, no deletion). A stage's plots are drawn by its own report task, keyed by its report output.
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
        key = key_for(self.stage, self.version, inputs["conf"], inputs.get("inputs") or {})
        token = open_store(inputs["store"]).fingerprint(self.stage, key)
        return None if token is None else f"{self.stage}-{key}-{token}"


@dataclass
class ReportCachePolicy(CachePolicy):
    """The report task's key: its report output's key (the stage output's key and the plotting code's
    version) and that output's fingerprint; None (the task runs) while it is not in the store. A plot
    change makes another key, so the task runs and draws again; the stage is never re-run for it."""
    stage: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        decl = stage(self.stage)
        rkey = report_key(decl, inputs["manifest"]["key"])
        token = open_store(inputs["store"]).fingerprint(decl.report_stage, rkey)
        return None if token is None else f"{decl.report_stage}-{rkey}-{token}"
