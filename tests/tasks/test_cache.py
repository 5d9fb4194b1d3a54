"""The Prefect cache keys are the store's content addresses, computed from the task's inputs alone (no
file read, written or deleted), and a Prefect record is never used for an output the store no longer has
(the flow runs that task with refresh_cache): checked end to end in tests/flows (corrupted, deleted)."""
from pathlib import Path

from gradiend_core.stages.runner import key_for
from tasks.cache import RESULTS_DIR, StageCachePolicy, results_dir
from flows.pipeline import stale


def test_keys_are_the_content_addresses_and_touch_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs = {"store": str(tmp_path / "nowhere"), "conf": {"x": 1}, "inputs": {"up": {"key": "abc"}}}
    key = StageCachePolicy(stage="demo", version="1").compute_key(None, inputs, {})
    assert key == f"demo-{key_for('demo', '1', {'x': 1}, {'up': {'key': 'abc'}})}"
    assert list(tmp_path.iterdir()) == []  # nothing created, not even the store


def test_stale_reads_the_store_only(tmp_path):
    from gradiend_core.stages.runner import run_stage
    from gradiend_core.store import open_store

    def build(out, conf, inputs, progress, paths):
        (out / "g.bin").write_bytes(bytes(range(256)))
        return {}

    key = run_stage(open_store(tmp_path / "s"), "demo", "1", {}, {}, build)["key"]
    assert not stale(str(tmp_path / "s"), "demo", key)
    f = tmp_path / "s" / "demo" / key / "g.bin"
    f.write_bytes(bytes(reversed(range(256))))  # same size, other bytes
    before = f.read_bytes()
    assert stale(str(tmp_path / "s"), "demo", key) and f.read_bytes() == before  # found, nothing changed
    assert stale(str(tmp_path / "s"), "demo", "0" * 20)  # never built


def test_results_live_in_this_hosts_directory_of_the_store(tmp_path):
    assert results_dir(str(tmp_path / "s")) == (tmp_path / "s" / RESULTS_DIR).resolve()
