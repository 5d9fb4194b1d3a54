"""Prefect cache keys that are the store's content addresses, computed from the task's inputs alone.

A stage task's key is its output's key (stage, code version, config slice, upstream keys): no file is
read, written or deleted to compute it. (Report tasks are not cached by Prefect: the flow submits one
only when its report output is not in the store.) Prefect's record of a key only saves running the
task: the flow (flows/pipeline.py) asks the store, before submitting, whether each output is still
there and valid (`Store.status`, which reads only), and runs the task with refresh_cache when it is
not, so a stale record is never returned for a deleted or corrupted output.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from prefect.cache_policies import CachePolicy

from gradiend_core.stages.runner import key_for
from gradiend_core.store import open_store

RESULTS_DIR = ".prefect-results"


def results_dir(store: str) -> Path:
    """Where Prefect keeps task results: in this host's directory of the store (a URL store: its cache),
    or, when that is read-only (a run that only reads cached outputs), in a temporary directory."""
    root = open_store(store).root
    if not root.exists() or os.access(root, os.W_OK) or os.access(root / RESULTS_DIR, os.W_OK):
        return root / RESULTS_DIR
    import hashlib
    import tempfile

    return Path(tempfile.gettempdir()) / f"gradiend-flow-results-{hashlib.sha256(str(root).encode()).hexdigest()[:16]}"


@dataclass
class StageCachePolicy(CachePolicy):
    stage: str = ""
    version: str = ""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> Optional[str]:
        return f"{self.stage}-{key_for(self.stage, self.version, inputs['conf'], inputs.get('inputs') or {})}"
