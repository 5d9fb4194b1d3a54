"""A store at an fsspec URL shared by hosts: each "host" here is its own local cache directory."""
import importlib.util
import json

import pytest

from gradiend_core.errors import StoreError
from gradiend_core.io import sha256_file
from gradiend_core.stages.runner import run_stage
from gradiend_core.store import LocalStore, UrlStore, open_store
from gradiend_core.store.url import cache_root


def _build(calls: list):
    def build(out, conf, inputs, progress, paths):
        calls.append(conf)
        (out / "sub").mkdir()
        (out / "sub" / "f.txt").write_text("hello")
        (out / "g.bin").write_bytes(bytes(range(256)))
        return {"n": 5}
    return build


@pytest.fixture
def url(tmp_path) -> str:
    return (tmp_path / "remote").as_uri()  # file:///...


def test_local_paths_and_urls(tmp_path, url, monkeypatch):
    assert type(open_store(tmp_path / "s")) is LocalStore
    monkeypatch.setenv("GRADIEND_FLOW_CACHE", str(tmp_path / "base"))
    s = open_store(url)
    assert isinstance(s, UrlStore) and s.location == url and s.root == cache_root(url)
    assert s.root.parent == (tmp_path / "base" / "stores").resolve()
    assert open_store(url, cache=tmp_path / "c").root.parent == (tmp_path / "c" / "stores").resolve()


@pytest.mark.parametrize("bad, needle", [("nosuch://bucket/x", "unknown protocol 'nosuch://'"),
                                         ("s3://bucket/x", "install it")])
def test_unknown_or_uninstalled_protocol_is_a_clear_error(bad, needle):
    if bad.startswith("s3") and importlib.util.find_spec("s3fs"):
        pytest.skip("s3fs is installed here")
    with pytest.raises(StoreError, match=needle) as e:
        open_store(bad)
    assert "\n" not in str(e.value)


def test_second_host_reuses_and_downloads(tmp_path, url):
    calls = []
    a = UrlStore(url, cache=tmp_path / "host-a")
    m1 = run_stage(a, "demo", "1", {"x": 1}, {}, _build(calls))
    assert not m1["cached"] and m1["path"] == str(a.path("demo", m1["key"]))
    remote = tmp_path / "remote" / "demo" / m1["key"]
    assert sorted(p.name for p in remote.iterdir()) == ["g.bin", "manifest.json", "sub"]
    assert json.loads((remote / "manifest.json").read_text())["files"].keys() == {"g.bin", "sub/f.txt"}

    b = UrlStore(url, cache=tmp_path / "host-b")
    assert not b.path("demo", m1["key"]).exists()
    m2 = run_stage(b, "demo", "1", {"x": 1}, {}, _build(calls))
    assert m2["cached"] and len(calls) == 1  # host B built nothing
    local = b.path("demo", m2["key"])
    assert {rel: sha256_file(local / rel) for rel in m1["files"]} == \
        {rel: f["sha256"] for rel, f in m1["files"].items()}  # downloaded, same bytes
    assert b.status("demo", m1["key"]) == "cached" and b.status("demo", "0" * 20) == "missing"


def test_corrupted_remote_file_is_detected_and_rebuilt(tmp_path, url):
    calls = []
    a = UrlStore(url, cache=tmp_path / "host-a")
    m = run_stage(a, "demo", "1", {}, {}, _build(calls))
    target = tmp_path / "remote" / "demo" / m["key"] / "g.bin"
    data = bytearray(target.read_bytes())
    data[7] ^= 0xFF  # same size, other content
    target.write_bytes(bytes(data))
    assert a.status("demo", m["key"]) == "cached"  # the listing alone cannot see it ...
    assert a.problems("demo", m["key"]) == [f"demo/{m['key']}/g.bin: content digest mismatch in {url}"]
    assert a.path("demo", m["key"]).joinpath("g.bin").read_bytes() == bytes(range(256))  # cache kept intact
    again = run_stage(a, "demo", "1", {}, {}, _build(calls))  # ... the digest can: rebuilt and re-uploaded
    assert not again["cached"] and len(calls) == 2 and target.read_bytes() == bytes(range(256))
    (tmp_path / "remote" / "demo" / m["key"] / "sub" / "f.txt").unlink()
    assert open_store(url, cache=tmp_path / "host-b").status("demo", m["key"]) == "broken"


def test_manifest_is_written_last(tmp_path, url, monkeypatch):
    """An upload that dies half way leaves no manifest: the output stays invisible, then is rebuilt."""
    a = UrlStore(url, cache=tmp_path / "host-a")
    put = UrlStore._put
    order = []

    def dying_put(self, src, dest):
        order.append(dest.rsplit("/", 1)[-1])
        if len(order) == 2:
            raise ConnectionError("network gone")
        put(self, src, dest)

    monkeypatch.setattr(UrlStore, "_put", dying_put)
    with pytest.raises(ConnectionError):
        run_stage(a, "demo", "1", {}, {}, _build([]))
    key = run_stage(LocalStore(tmp_path / "probe"), "demo", "1", {}, {}, _build([]))["key"]
    assert a.manifest("demo", key) is None and a.status("demo", key) == "missing"
    monkeypatch.setattr(UrlStore, "_put", lambda self, src, dest: order.append(dest.rsplit("/", 1)[-1])
                        or put(self, src, dest))
    order.clear()
    assert not run_stage(a, "demo", "1", {}, {}, _build([]))["cached"]
    assert order[-1] == "manifest.json"


def test_listing_find_and_remove(tmp_path):
    s = open_store("memory://gradiend-test-listing", cache=tmp_path / "c")
    m = run_stage(s, "demo", "1", {}, {}, _build([]))
    assert list(s.outputs()) == [("demo", m["key"])] and s.find(m["key"][:6]) == ("demo", m["key"])
    assert s.where("demo", m["key"]) == f"memory://gradiend-test-listing/demo/{m['key']}"
    with s.shared_staging("demo", m["key"]) as area:  # a shared build that died before publishing
        (area.path / "g.bin").write_bytes(b"x")
    assert area.id.startswith(f"memory://gradiend-test-listing/demo/.staging-{m['key']}-")
    assert s.leftovers() == [area.id] and not area.path.exists()  # the scratch dir went with its step
    for item in s.leftovers():
        s.remove_leftover(item)
    s.remove("demo", m["key"])
    assert list(s.outputs()) == [] and s.leftovers() == [] and not s.path("demo", m["key"]).exists()
    with pytest.raises(StoreError, match="no output with key"):
        s.find("zz")


def test_parts_get_the_shared_files_and_upload_only_their_new_ones(tmp_path, url, monkeypatch):
    s = UrlStore(url, cache=tmp_path / "host-a")
    with s.shared_staging("demo", "k1") as area:
        (area.path / "shared.txt").write_text("everyone needs this")
    uploaded = []
    put = UrlStore._put
    monkeypatch.setattr(UrlStore, "_put", lambda self, src, dest: uploaded.append(dest.rsplit("/", 1)[-1])
                        or put(self, src, dest))
    other = UrlStore(url, cache=tmp_path / "host-b")  # parts run on other hosts
    with other.part_workspace("demo", "k1", area.id, "p0") as ws:
        assert (ws / "shared.txt").read_text() == "everyone needs this"
        (ws / "p0.bin").write_bytes(b"0")
    assert uploaded == ["p0.bin", "part-p0.json"] and not ws.exists()
    with pytest.raises(RuntimeError), other.part_workspace("demo", "k1", area.id, "p1") as ws:
        (ws / "p1.bin").write_bytes(b"1")
        raise RuntimeError("killed")
    assert uploaded == ["p0.bin", "part-p0.json"]  # a failed part uploads nothing
    with other.part_workspace("demo", "k1", area.id, "p1") as ws:
        (ws / "p1.bin").write_bytes(b"1")
        (ws / "progress-p1.json").write_text("{}")
    m = s.publish_shared("demo", "k1", area.id, {"info": {}}, drop=["progress-*.json"])
    assert list(m["files"]) == ["p0.bin", "p1.bin", "shared.txt"] and uploaded[-1] == "manifest.json"
    assert s.leftovers() == [] and other.leftovers() == []
    assert (s.fetch("demo", "k1") / "p1.bin").read_bytes() == b"1"


def test_parts_that_wrote_one_file_differently_are_refused(tmp_path, url):
    s = UrlStore(url, cache=tmp_path / "host-a")
    with s.shared_staging("demo", "k1") as area:
        (area.path / "shared.txt").write_text("s")
    for part in ("p0", "p1"):
        with s.part_workspace("demo", "k1", area.id, part) as ws:
            (ws / "same.bin").write_text(part)
    with pytest.raises(StoreError, match="with different bytes"):
        s.publish_shared("demo", "k1", area.id, {})
    assert s.manifest("demo", "k1") is None
    with pytest.raises(StoreError, match="no staging area of demo/k2"):
        s.part_workspace("demo", "k2", area.id, "p2").__enter__()
    s.remove_leftover(area.id)  # gc during the run: nothing is published, not even an empty output
    with pytest.raises(StoreError, match="has no 'shared' record"):
        s.publish_shared("demo", "k1", area.id, {})
    assert s.manifest("demo", "k1") is None
