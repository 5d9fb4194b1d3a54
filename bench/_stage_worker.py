"""Run ONE stage of an experiment's plan in this process, without Prefect, and print a JSON line.

    python bench/_stage_worker.py CONFIG STORE STAGE_ID

Upstream outputs must already be in the store (run the plan's stages in order). The parent measures this
process's wall time and peak RSS (os.wait4), so each stage's memory is its own.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(config: str, store: str, stage_id: str) -> dict:
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan, run_step
    from gradiend_core.store import LocalStore

    steps = plan(load_experiment(config))
    if stage_id not in steps:
        raise SystemExit(f"unknown stage id {stage_id!r}; plan ids: {', '.join(steps)}")
    s = LocalStore(Path(store))
    p = steps[stage_id]
    inputs = {name: s.load(steps[i].stage, steps[i].key) for name, i in p.inputs.items()}
    t0 = time.perf_counter()
    m = run_step(s, p, inputs)
    seconds = time.perf_counter() - t0
    from _common import dir_size  # noqa: E402  (bench/ is sys.path[0] when run as a script)

    return {"stage": stage_id, "key": m["key"], "cached": bool(m.get("cached")), "seconds": round(seconds, 3),
            "build_seconds": m.get("seconds"), "disk_bytes": dir_size(m["path"]), "info": m.get("info", {})}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4]), sort_keys=True, default=str), flush=True)
