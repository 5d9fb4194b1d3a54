"""Determinism and integrity: two cold runs give identical bytes; `verify` finds a flipped byte and the
next run recomputes exactly that output."""
import json
from pathlib import Path

import pytest

from flows.cli import main
from gradiend_core.experiment import load_experiment
from gradiend_core.stages import plan as stage_plan
from gradiend_core.store import LocalStore


def run_plan(config: Path, store: Path) -> dict:
    """Every stage in plan order, in this process (no Prefect): the stores' bytes are what is tested."""
    return stage_plan.run_plan(LocalStore(store), stage_plan.plan(load_experiment(config)))


def all_digests(store: Path) -> dict:
    """(stage, key, file) -> sha256 over every manifest in the store."""
    s = LocalStore(store)
    return {(st, k, rel): f["sha256"] for st, k in s.outputs() for rel, f in s.manifest(st, k)["files"].items()}


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory, tiny_model_dir):
    import yaml

    from gradiend_core.testing import tiny_experiment

    d = tmp_path_factory.mktemp("integrity")
    config = d / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment(tiny_model_dir)))
    return config, run_plan(config, d / "a"), d / "a", d / "b"


def test_two_cold_runs_have_identical_digests(two_stores):
    config, _, a, b = two_stores
    run_plan(config, b)
    da, db = all_digests(a), all_digests(b)
    assert len(da) > 30 and {s for s, _, _ in da} >= {"extract-gradients", "train-seed", "rewrite"}
    assert da == db  # every file of every stage, nothing excluded


def test_verify_reports_corruption_and_next_run_recomputes(two_stores, capsys):
    config, manifests, a, _ = two_stores
    assert main(["verify", "--store", str(a)]) == 0
    capsys.readouterr()
    m = manifests["pre-prune"]
    rel = max(m["files"], key=lambda r: m["files"][r]["size"])
    target = a / "pre-prune" / m["key"] / rel
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte, same size
    target.write_bytes(bytes(data))

    assert main(["verify", "--store", str(a)]) == 1
    out = capsys.readouterr().out
    assert f"CORRUPT pre-prune/{m['key']}/{rel}: content digest mismatch" in out
    assert out.strip().splitlines()[-1].endswith("1 corrupted or incomplete")

    again = run_plan(config, a)
    assert {sid for sid, x in again.items() if not x["cached"]} == {"pre-prune"}
    assert again["pre-prune"]["files"][rel]["sha256"] == m["files"][rel]["sha256"]  # same bytes as before
    assert main(["verify", "--store", str(a)]) == 0
