"""Two real processes running the same experiment on one store at the same time: each stage is computed
once (the per-key lock in run_stage, the same code path the Prefect tasks use), both succeed with the same
outputs, and the run that waited reuses what the other built.

The processes drive the plan without Prefect: two CLI runs cost ~60 s here, mostly two temporary Prefect
API servers starting on two cores, and the behaviour under test lives in the store and the runner.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUN = textwrap.dedent("""
    import json, sys
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan, run_plan
    from gradiend_core.store import LocalStore

    done = run_plan(LocalStore(sys.argv[2]), plan(load_experiment(sys.argv[1])))
    print(json.dumps({sid: {"key": m["key"], "cached": m["cached"],
                            "files": {r: f["sha256"] for r, f in m["files"].items()}} for sid, m in done.items()}))
""")


def test_two_concurrent_runs_compute_each_stage_once(tiny_config, tmp_path):
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", RUN, str(tiny_config), str(store)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    a, b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)

    assert set(a) == set(b) and {"extract-gradients", "train-seed-1", "rewrite-3SG-strengthen"} <= set(a)
    for sid in a:  # same outputs; exactly one of the two runs built each stage, the other reused it
        assert a[sid]["key"] == b[sid]["key"] and a[sid]["files"] == b[sid]["files"], sid
        assert a[sid]["cached"] != b[sid]["cached"], sid
    from gradiend_core.store import LocalStore

    s = LocalStore(store)
    assert sorted(k for _, k in s.outputs()) == sorted(v["key"] for v in a.values())  # one output per key
    assert s.leftovers() == []
