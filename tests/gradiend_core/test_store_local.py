"""The local directory store: keys, atomic publish, integrity checks, locks, staging dirs, cleanup
(what both store kinds share is in test_store.py)."""
import os
import threading
import time

import pytest

from gradiend_core.errors import StoreError
from gradiend_core.stages.runner import run_stage
from gradiend_core.store import LocalStore, stage_key


def test_key_depends_on_exactly_its_inputs():
    k = stage_key("s", "1", {"a": 1, "b": [1, 2]}, {"up": "x"})
    assert k == stage_key("s", "1", {"b": [1, 2], "a": 1}, {"up": "x"})  # key order is irrelevant
    others = [stage_key("t", "1", {"a": 1, "b": [1, 2]}, {"up": "x"}),
              stage_key("s", "2", {"a": 1, "b": [1, 2]}, {"up": "x"}),
              stage_key("s", "1", {"a": 2, "b": [1, 2]}, {"up": "x"}),
              stage_key("s", "1", {"a": 1, "b": [1, 2]}, {"up": "y"})]
    assert len({k, *others}) == 5


def _build(text="hello"):
    calls = []

    def build(out, conf, inputs, progress, paths):
        calls.append(conf)
        (out / "sub").mkdir()
        (out / "sub" / "f.txt").write_text(text)
        return {"n": len(text)}
    return build, calls


def test_build_publish_reuse_and_recompute_on_corruption(tmp_path):
    store = LocalStore(tmp_path)
    build, calls = _build()
    m1 = run_stage(store, "demo", "1", {"x": 1}, {}, build)
    assert not m1["cached"] and m1["files"]["sub/f.txt"]["size"] == 5 and m1["info"] == {"n": 5}
    m2 = run_stage(store, "demo", "1", {"x": 1}, {}, build)
    assert m2["cached"] and len(calls) == 1
    f = store.path("demo", m1["key"]) / "sub" / "f.txt"
    f.write_text("jello")  # same size, other content
    assert store.problems("demo", m1["key"])
    m3 = run_stage(store, "demo", "1", {"x": 1}, {}, build)
    assert not m3["cached"] and f.read_text() == "hello" and len(calls) == 2
    f.unlink()
    assert any("missing" in p for p in store.problems("demo", m1["key"]))
    assert not run_stage(store, "demo", "1", {"x": 1}, {}, build)["cached"]


def test_failed_build_leaves_nothing_visible(tmp_path):
    store = LocalStore(tmp_path)

    def boom(out, conf, inputs, progress, paths):
        (out / "partial").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(store, "demo", "1", {}, {}, boom)
    assert list(store.outputs()) == [] and store.leftovers() == []


def test_concurrent_runs_compute_once(tmp_path):
    store = LocalStore(tmp_path)
    calls = []

    def slow(out, conf, inputs, progress, paths):
        calls.append(1)
        time.sleep(0.5)
        (out / "f").write_text("x")
        return {}

    results = []
    threads = [threading.Thread(target=lambda: results.append(run_stage(store, "demo", "1", {}, {}, slow)))
               for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(calls) == 1 and sorted(r["cached"] for r in results) == [False, True]


def test_staging_adopts_a_dead_runs_dir_only_when_resumable(tmp_path):
    store = LocalStore(tmp_path)
    old, older = (tmp_path / "demo" / f".staging-k1-host-{pid}-0000" for pid in (1, 2))  # two runs that died
    old.mkdir(parents=True)
    older.mkdir()
    (older / "a").write_text("older")
    (old / "b").write_text("newest")
    os.utime(older, ns=(1, 1))
    resumed = store.staging("demo", "k1", resumable=True)
    assert (resumed / "b").read_text() == "newest" and not (resumed / "a").exists()
    assert store.leftover_staging("demo", "k1") == [resumed]  # the older one was deleted
    fresh = store.staging("demo", "k1")
    assert list(fresh.iterdir()) == [] and store.leftover_staging("demo", "k1") == [fresh]
    assert store.staging("demo", "k2", resumable=True) not in store.leftover_staging("demo", "k1")


def test_shared_staging_is_the_resumable_staging_dir(tmp_path):
    store = LocalStore(tmp_path)
    with store.shared_staging("demo", "k1") as area:
        (area.path / "shared.txt").write_text("s")
    with store.part_workspace("demo", "k1", area.id, "p0") as ws:
        assert ws == area.path  # parts write in place: a killed part's files survive
        (ws / "part.txt").write_text("p")
    with store.shared_staging("demo", "k1") as again:  # a run after a kill: the files are kept
        assert sorted(p.name for p in again.path.iterdir()) == ["part.txt", "shared.txt"]
    with pytest.raises(StoreError, match="no staging area of demo/k2"):
        store.publish_shared("demo", "k2", again.id, {})
    with pytest.raises(StoreError, match="is gone"):
        store.part_workspace("demo", "k1", area.id, "p1").__enter__()


def test_find_and_errors(tmp_path):
    store = LocalStore(tmp_path)
    build, _ = _build()
    m = run_stage(store, "demo", "1", {}, {}, build)
    assert store.find(m["key"][:6]) == ("demo", m["key"])
    with pytest.raises(StoreError, match="no output"):
        store.find("zzzz")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_store_is_reported(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(StoreError, match="not writable"):
        LocalStore(ro).check_writable()


def test_digests_hashed_by_the_writer_are_reused_only_while_the_file_is_unchanged(tmp_path, monkeypatch):
    """io.remember_digest (a writer thread, right after writing) lets publishing skip reading a file
    again; a file replaced or resized afterwards is hashed again, so a manifest never lists a stale digest."""
    import hashlib

    from gradiend_core import io
    from gradiend_core.store import file_entries

    files = {name: tmp_path / "out" / name for name in ("same", "replaced", "grown")}
    for i, p in enumerate(files.values()):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([i]) * 1000)
        io.remember_digest(p)
    tmp = tmp_path / "new"
    tmp.write_bytes(b"\xff" * 1000)                          # same size, another inode
    os.replace(tmp, files["replaced"])
    with open(files["grown"], "ab") as f:
        f.write(b"more")
    read = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda p, *a: read.append(os.path.basename(p)) or real(p, *a))
    entries = file_entries(tmp_path / "out")
    assert sorted(read) == ["grown", "replaced"]                 # "same" came from the writer's digest
    for name, p in files.items():
        assert entries[name]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
    read.clear()
    file_entries(tmp_path / "out")                               # publishing forgot them: read again
    assert sorted(read) == ["grown", "replaced", "same"]
