"""A Prefect cache policy keyed exactly like the artifact store, computed without side effects.

The key is the stage's content address (stage, code version, config slice, upstream keys) plus the
store's fingerprint of the published output (its manifest, and each file's size and change stamp as
the store sees them without downloading): tensors, DataFrames and paths are never hashed. When the output is not
cached (missing, or broken as far as `status` can tell) there is no key, so Prefect runs the task
and run_stage rebuilds or reuses it. A republished or rewritten output has another fingerprint, so
a stale Prefect record is never returned for it; computing the key reads only (no download, no
write, no deletion). A stage that draws a report needs its report output too (keyed by the stage's
key and the plotting code's version): a plot change or a deleted plot runs the task, which reuses the
stage from the store and draws the report again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from prefect.cache_policies import CachePolicy

from gradiend_core.stages.plan import report_key
from gradiend_core.stages.registry import BY_NAME
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
        store = open_store(inputs["store"])
        tokens = [store.fingerprint(self.stage, key)]
        decl = BY_NAME.get(self.stage)  # a declared stage (tests key undeclared ones too)
        rkey = report_key(decl, key) if decl is not None else None
        if rkey is not None:
            tokens.append(store.fingerprint(decl.report_stage, rkey))
        return None if None in tokens else f"{self.stage}-{key}-" + "-".join(tokens)
