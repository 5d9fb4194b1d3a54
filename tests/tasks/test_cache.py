"""The Prefect cache key of a stage: the output's content key plus the store's fingerprint of it,
computed without side effects (no download, no write, no deletion), and absent while the output is
not cached, so a stale Prefect record is never returned."""
from pathlib import Path

import pytest

from gradiend_core.stages.runner import run_stage
from gradiend_core.store import UrlStore, open_store
from tasks.cache import RESULTS_DIR, StageCachePolicy, results_dir

CONF = {"x": 1}


def build(out, conf, inputs, progress, paths):
    (out / "g.bin").write_bytes(bytes(range(256)))
    return {}


def snapshot(root: Path) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def compute_key(store: str):
    return StageCachePolicy(stage="demo", version="1").compute_key(
        None, {"store": store, "conf": CONF, "inputs": {}}, {})


@pytest.mark.parametrize("kind", ["local", "url"])
def test_compute_key_only_reads(kind, tmp_path, monkeypatch):
    location = str(tmp_path / "store") if kind == "local" else (tmp_path / "store").as_uri()
    monkeypatch.setenv("GRADIEND_FLOW_CACHE", str(tmp_path / "host-a"))
    key = run_stage(open_store(location), "demo", "1", CONF, {}, build)["key"]
    monkeypatch.setattr(UrlStore, "_download", lambda *a: pytest.fail("compute_key downloaded a file"))
    stale = results_dir(location) / f"demo-{key}"  # a Prefect record of an older run
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")

    def key_and_no_side_effect():
        before = snapshot(tmp_path)
        cache_key = compute_key(location)
        assert snapshot(tmp_path) == before and stale.read_text() == "stale"  # nothing written or deleted
        return cache_key

    cache_key = key_and_no_side_effect()
    assert cache_key.startswith(f"demo-{key}-") and key_and_no_side_effect() == cache_key
    monkeypatch.setenv("GRADIEND_FLOW_CACHE", str(tmp_path / "host-b"))  # a host that never read it
    assert key_and_no_side_effect() == cache_key and not (tmp_path / "host-b").exists()
    stored = tmp_path / "store" / "demo" / key / "g.bin"
    stored.write_bytes(bytes(reversed(range(256))))  # rewritten in place, same size
    assert key_and_no_side_effect() != cache_key  # (local: re-hashed, broken: None) no old record matches
    stored.unlink()
    assert key_and_no_side_effect() is None  # not cached: the task runs and rebuilds


def test_results_live_in_this_hosts_directory_of_the_store(tmp_path):
    assert results_dir(str(tmp_path / "s")) == (tmp_path / "s" / RESULTS_DIR).resolve()
