"""Resume after SIGKILL: extraction continues from its last complete row block, a killed training seed
restarts; either way the published output is bit-identical to an uninterrupted run."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from gradiend_core.experiment import load_experiment
from gradiend_core import extraction as xg
from gradiend_core.stages import plan as stage_plan
from gradiend_core.testing import tiny_experiment
from gradiend_core.store import LocalStore

ROOT = Path(__file__).resolve().parents[2]

# Runs the plan up to STAGE_ID in a fresh process and SIGKILLs itself from inside the stage (a real
# SIGKILL: no finally blocks, no cleanup; the kernel drops the fcntl lock).
KILLER = textwrap.dedent("""
    import os, signal, sys
    from gradiend_core.experiment import load_experiment
    from gradiend_core import extraction as xg
    from gradiend_core.stages import train_seed as ts
    from gradiend_core.store import LocalStore
    from gradiend_core.stages.plan import plan, run_plan

    config, store, stop_at, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    recorded = xg.write_progress

    def write_progress(out, n, dim, done):  # die right after the k-th block was recorded
        recorded(out, n, dim, done)
        if len(done) >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def save_gradiend(*a, **k):  # die after training, while the checkpoint sits in staging
        saved(*a, **k)
        os.kill(os.getpid(), signal.SIGKILL)

    saved = ts.save_gradiend
    xg.write_progress, ts.save_gradiend = write_progress, save_gradiend
    run_plan(LocalStore(store), plan(load_experiment(config)), until=stop_at)
""")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import save_tiny, tiny_mlm

    d = tmp_path_factory.mktemp("resume")
    model_dir = save_tiny(*tiny_mlm(seed=0, hidden=32, layers=2, words=builtin_vocabulary()), d / "tiny-bert")
    exp = tiny_experiment(model_dir)
    exp["train"]["max_seeds"] = 1
    p = d / "tiny.yaml"
    p.write_text(yaml.safe_dump(exp))
    return p


def run_plan(config: Path, store: Path, stop_at: str) -> dict:
    return stage_plan.run_plan(LocalStore(store), stage_plan.plan(load_experiment(config)), until=stop_at)


def killed_run(config: Path, store: Path, stop_at: str, kill_after: int = 10**9) -> None:
    r = subprocess.run([sys.executable, "-c", KILLER, str(config), str(store), stop_at, str(kill_after)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == -9, r.stderr[-2000:]  # killed by SIGKILL, not finished or crashed


def digests(m: dict) -> dict:
    return {rel: f["sha256"] for rel, f in m["files"].items()}


@pytest.fixture(scope="module")
def clean(config, tmp_path_factory) -> dict:
    """Manifests of an uninterrupted run (the reference for bit-identity)."""
    return run_plan(config, tmp_path_factory.mktemp("clean") / "store", "train-seed-0")


def test_extraction_resumes_from_last_complete_block(config, clean, tmp_path, monkeypatch):
    store = tmp_path / "store"
    n_rows = clean["extract-gradients"]["info"]["n_rows"]
    batch = load_experiment(config).extract.batch_size
    n_blocks = -(-n_rows // batch)
    assert n_blocks >= 5
    killed_run(config, store, "extract-gradients", kill_after=3)
    s = LocalStore(store)
    assert not [k for st, k in s.outputs() if st == "extract-gradients"]  # nothing published
    [staging] = s.leftover_staging("extract-gradients", clean["extract-gradients"]["key"])
    assert len(xg.read_progress(staging, n_rows, clean["extract-gradients"]["info"]["dim"])) == 3
    # what a kill inside zarr's own atomic write of a shard leaves (the resumed block rewrites the shard)
    partial = staging / "gradients.zarr" / "factual" / "c" / "3" / "0.0123456789abcdef.partial"
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"half a shard")

    extracted = []
    original = xg.extract_block
    monkeypatch.setattr(xg, "extract_block", lambda ex, block, *a: extracted.append(len(block)) or
                        original(ex, block, *a))
    m = run_plan(config, store, "extract-gradients")["extract-gradients"]
    assert not m["cached"] and len(extracted) == n_blocks - 3  # only the remaining blocks
    assert digests(m) == digests(clean["extract-gradients"])  # no stray .partial file among them
    assert "progress.json" not in m["files"] and s.leftovers() == []
    assert not s.problems("extract-gradients", m["key"], deep=True)


def test_killed_training_leaves_no_output_and_restarts(config, clean, tmp_path):
    store = tmp_path / "store"
    killed_run(config, store, "train-seed-0")
    s = LocalStore(store)
    assert not [k for st, k in s.outputs() if st == "train-seed"]  # the checkpoint stayed in staging
    [staging] = s.leftover_staging("train-seed", clean["train-seed-0"]["key"])
    assert (staging / "model").is_dir()

    m = run_plan(config, store, "train-seed-0")["train-seed-0"]
    assert not m["cached"] and digests(m) == digests(clean["train-seed-0"])
    assert s.leftovers() == []  # the dead run's staging dir was dropped, not reused


def test_a_requested_stop_keeps_every_written_block_and_the_next_run_resumes(config, clean, tmp_path):
    """gradiend_core.stop, as the CLI's Ctrl-C uses it: the stage stops at its next progress report (a safe
    point) with the block then in flight recorded too; its staging dir stays for the next run, which ends
    with the uninterrupted run's bytes. A stage that cannot resume drops its staging dir."""
    from gradiend_core import stop

    store = tmp_path / "store"
    s, key, info = LocalStore(store), clean["extract-gradients"]["key"], clean["extract-gradients"]["info"]
    reports = []

    def progress(fraction: float, message: str = "") -> None:  # what tasks/stage.Progress does at each report
        reports.append(message)
        if sum(r.startswith("extracted") for r in reports) == 2:  # two blocks extracted, the 2nd being written
            stop.request("SIGINT")
        stop.reached("extract-gradients", message)

    try:
        with pytest.raises(stop.Stopped):
            stage_plan.run_plan(s, stage_plan.plan(load_experiment(config)), until="extract-gradients",
                                progress=progress)
        assert stop.stopped_at() == {"extract-gradients": reports[-1]}
    finally:
        stop.clear()
    [staging] = s.leftover_staging("extract-gradients", key)
    assert len(xg.read_progress(staging, info["n_rows"], info["dim"])) == 2, reports  # the block in flight is kept

    m = run_plan(config, store, "extract-gradients")["extract-gradients"]
    assert not m["cached"] and digests(m) == digests(clean["extract-gradients"]) and s.leftovers() == []

    run_plan(config, store, "pre-prune")
    stop.request("SIGTERM")
    try:
        with pytest.raises(stop.Stopped):
            stage_plan.run_plan(s, stage_plan.plan(load_experiment(config)), until="train-seed-0",
                                progress=lambda f, msg="": stop.reached("train-seed-0", msg))
        assert stop.stopped_at()["train-seed-0"].startswith("seed 0: step")
    finally:
        stop.clear()
    assert s.leftovers() == []  # train-seed restarts: nothing of it is kept
