"""The store contract (gradiend_core.store.contract.Store), checked the same way on both kinds: a local
directory and a file:// URL store with its own cache. Store-specific details are in test_store_local.py
and test_store_url.py."""
import os
from pathlib import Path

import pytest

from gradiend_core.errors import StoreError
from gradiend_core.stages.runner import run_stage
from gradiend_core.store import LocalStore, Store, UrlStore, open_store


@pytest.fixture(params=["local", "url"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return open_store(tmp_path / "store")
    return open_store((tmp_path / "store").as_uri(), cache=tmp_path / "cache")


def stored(store: Store, stage: str, key: str) -> Path:
    """Where the store itself keeps an output (both kinds are local files in these tests)."""
    where = store.where(stage, key)
    return Path(where.removeprefix("file://"))


def snapshot(root: Path) -> dict:
    """Every path below root with its size and mtime: what a read-only call must leave as it was."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def build(out, conf, inputs, progress, paths):
    (out / "sub").mkdir()
    (out / "sub" / "f.txt").write_text("hello")
    (out / "g.bin").write_bytes(bytes(range(256)))
    return {"n": 5}


def test_both_kinds_implement_the_whole_contract():
    for kind in (LocalStore, UrlStore):
        assert issubclass(kind, Store) and not kind.__abstractmethods__


def test_publish_load_status_and_reads_without_side_effects(store, tmp_path):
    m = run_stage(store, "demo", "1", {}, {}, build)
    key = m["key"]
    assert not m["cached"] and list(m["files"]) == ["g.bin", "sub/f.txt"] and m["info"] == {"n": 5}
    assert store.status("demo", key) == "cached" and store.problems("demo", key) == []
    assert store.manifest("demo", key)["files"] == {r: f for r, f in m["files"].items()}
    assert (store.fetch("demo", key) / "sub" / "f.txt").read_text() == "hello"
    assert list(store.outputs()) == [("demo", key)] and store.find(key[:5]) == ("demo", key)
    assert run_stage(store, "demo", "1", {}, {}, build)["cached"]
    fp, before = store.fingerprint("demo", key), snapshot(tmp_path)
    assert fp and store.fingerprint("demo", key) == fp  # stable while nothing changes
    for k in (key, "0" * 20):
        store.status("demo", k), store.fingerprint("demo", k), store.manifest("demo", k)
    assert snapshot(tmp_path) == before  # status, fingerprint, manifest: no download, no write
    assert store.status("demo", "0" * 20) == "missing" and store.fingerprint("demo", "0" * 20) is None
    with pytest.raises(StoreError, match="run the flow first"):
        store.load("demo", "0" * 20)


def test_damage_is_seen_and_the_output_rebuilt(store):
    key = run_stage(store, "demo", "1", {}, {}, build)["key"]
    fp = store.fingerprint("demo", key)
    target = stored(store, "demo", key) / "g.bin"
    target.write_bytes(bytes(reversed(range(256))))  # same size, other bytes
    assert store.fingerprint("demo", key) != fp  # a rewrite in place: no stale cache key
    assert store.problems("demo", key) == [f"demo/{key}/g.bin: content digest mismatch" +
                                           ("" if isinstance(store, LocalStore) else f" in {store.location}")]
    assert not run_stage(store, "demo", "1", {}, {}, build)["cached"]
    assert target.read_bytes() == bytes(range(256)) and store.status("demo", key) == "cached"
    (stored(store, "demo", key) / "sub" / "f.txt").unlink()
    assert store.status("demo", key) == "broken" and store.fingerprint("demo", key) is None
    assert any("missing" in p for p in store.problems("demo", key))


def test_staging_resumes_only_when_asked(store):
    dead = store.staging("demo", "k1")
    (dead / "half").write_text("done before the kill")
    resumed = store.staging("demo", "k1", resumable=True)
    assert (resumed / "half").read_text() == "done before the kill" and not dead.exists()
    assert list(store.staging("demo", "k1").iterdir()) == [] and not resumed.exists()


def test_shared_build_round_trip_equals_a_one_task_build(store, tmp_path):
    one = run_stage(open_store(tmp_path / "reference"), "demo", "1", {}, {}, build)
    key = one["key"]
    with store.lock("demo", key):
        with store.shared_staging("demo", key) as area:
            (area.path / "sub").mkdir()
            (area.path / "sub" / "f.txt").write_text("hello")
        for i, write in enumerate([lambda ws: (ws / "g.bin").write_bytes(bytes(range(256))),
                                   lambda ws: (ws / "progress-1.json").write_text("{}")]):
            with store.part_workspace("demo", key, area.id, f"part-{i}") as ws:
                assert (ws / "sub" / "f.txt").read_text() == "hello"  # the shared files are there
                write(ws)
        with pytest.raises(StoreError, match="part name '../x' is not allowed"):
            store.part_workspace("demo", key, area.id, "../x").__enter__()
        m = store.publish_shared("demo", key, area.id, {"info": {"n": 5}}, drop=["progress-*.json"])
    sha = {r: f["sha256"] for r, f in one["files"].items()}
    assert {r: f["sha256"] for r, f in m["files"].items()} == sha
    assert {r: f["sha256"] for r, f in store.load("demo", key)["files"].items()} == sha
    assert store.problems("demo", key, deep=True) == [] and store.leftovers() == []


def test_leftovers_and_removal(store):
    key = run_stage(store, "demo", "1", {}, {}, build)["key"]
    with store.shared_staging("demo", "k2") as area:  # a shared build whose run died before publishing
        (area.path / "f").write_text("x")

    def boom(out, conf, inputs, progress, paths):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(store, "demo", "2", {}, {}, boom)  # a failed build cleans up after itself
    leftovers = store.leftovers()
    assert len(leftovers) == 1 and ".staging-k2-" in leftovers[0]
    store.remove_leftover(leftovers[0])
    assert store.leftovers() == []
    store.remove("demo", key)
    assert store.status("demo", key) == "missing" and list(store.outputs()) == []
    assert not store.path("demo", key).exists() and not stored(store, "demo", key).exists()


def test_lock_is_exclusive_per_key(store):
    import threading

    order = []

    def second():
        with store.lock("demo", "k1"):
            order.append("second")

    with store.lock("demo", "k1"):
        t = threading.Thread(target=second)
        t.start()
        t.join(0.3)
        order.append("first")
        with store.lock("demo", "k2"):  # another key is not blocked
            pass
    t.join(5)
    assert order == ["first", "second"]


def test_check_writable(store, tmp_path):
    store.check_writable()
    assert os.access(store.root, os.W_OK)


def test_verified_reads_only_and_sees_same_size_rewrites(store, tmp_path):
    key = run_stage(store, "demo", "1", {}, {}, build)["key"]  # built (and so verified) on this host
    before = snapshot(tmp_path)
    assert store.verified("demo", key) and not store.verified("demo", "0" * 20)
    assert snapshot(tmp_path) == before  # no download, no write
    f = stored(store, "demo", key) / "g.bin"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    f.write_bytes(bytes(reversed(range(256))))  # same size, other bytes, a new mtime
    assert not store.verified("demo", key)
    if isinstance(store, UrlStore):  # another host that never fetched the output has not verified it
        other = open_store(store.location, cache=tmp_path / "other-cache")
        assert not other.verified("demo", key) and not (tmp_path / "other-cache").exists()
