"""A Prefect cache policy keyed exactly like the artifact store.

The key is the stage's content address (stage, code version, config slice, upstream keys); tensors,
DataFrames and paths are never hashed. A key is only offered to Prefect while the store holds a valid
output for it: when the output is missing or corrupted, the stale Prefect record is dropped first, so
the task runs and rebuilds instead of returning a manifest that points at nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from prefect.cache_policies import CachePolicy

from gradiend_core.cas import open_store
from gradiend_core.stages.runner import key_for

RESULTS_DIR = ".prefect-results"


def results_dir(store: str) -> Path:
    return open_store(store).root / RESULTS_DIR  # a URL store: in this host's cache


@dataclass
class StageCachePolicy(CachePolicy):
    stage: str = ""
    version: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        key = key_for(self.stage, self.version, inputs["conf"], inputs.get("inputs") or {})
        cache_key = f"{self.stage}-{key}" + report_suffix(self.stage)
        if not open_store(inputs["store"]).is_valid(self.stage, key):
            (results_dir(inputs["store"]) / cache_key).unlink(missing_ok=True)
        return cache_key


def report_suffix(stage: str) -> str:
    """The stage's report code version (read now, not when the task was made): a plot change makes
    a new cache key, so the task runs again: the stage is reused from the store, the report re-drawn."""
    from gradiend_core.stages.registry import stage as declared

    r = declared(stage).report
    return f"-{r.key_version()}" if r is not None and r.draw is not None else ""
