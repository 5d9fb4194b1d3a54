"""extract-gradients in row shards (runner.extract_shards): the shard tasks run, and the stored bytes
and keys are exactly those of the one-task extraction, on a local store and on a URL store."""
from gradiend_core.store import open_store


def ran(summary) -> set[str]:
    return {sid for sid, st in summary["stages"].items() if not st["cached"]}


def digests(location: str, summary: dict) -> dict:
    """(stage id, file) -> sha256 of every output the run used."""
    s = open_store(location)
    out = {}
    for sid, st in summary["stages"].items():
        stage = st["stage"]
        out.update({(sid, rel): f["sha256"] for rel, f in s.manifest(stage, st["key"])["files"].items()})
    return out


def test_row_shards_write_the_same_store(run_json, prefect_home, tiny_config, tmp_path, monkeypatch):
    one = run_json(tiny_config, tmp_path / "one")
    three = run_json(tiny_config, tmp_path / "three", "runner.extract_shards=3")
    assert ran(one) == ran(three) == set(one["stages"])
    assert {k: v["key"] for k, v in three["stages"].items()} == {k: v["key"] for k, v in one["stages"].items()}
    assert "shards" not in one["stages"]["extract-gradients"]
    shards = three["stages"]["extract-gradients"]["shards"]  # the summary shows the shard tasks that ran
    assert [s["shard"] for s in shards] == [0, 1, 2] and all(s["rows"] > 0 for s in shards)
    n_rows = open_store(tmp_path / "one").manifest("extract-gradients", one["stages"]["extract-gradients"]["key"])
    assert sum(s["rows"] for s in shards) == n_rows["info"]["n_rows"]
    reference = digests(str(tmp_path / "one"), one)
    assert any(rel.startswith("gradients.zarr/") for _, rel in reference)
    assert digests(str(tmp_path / "three"), three) == reference  # every file of every stage
    assert open_store(tmp_path / "three").leftovers() == []  # no progress files, no scratch dirs

    # URL store: each shard extracts into its own scratch zarr and uploads only its chunk files
    url = (tmp_path / "shared").as_uri()
    monkeypatch.setenv("GRADIEND_FLOW_CACHE", str(tmp_path / "cache"))
    remote = run_json(tiny_config, url, "runner.extract_shards=2")
    assert len(remote["stages"]["extract-gradients"]["shards"]) == 2
    assert digests(url, remote) == reference
    assert open_store(url).leftovers() == []  # the remote staging prefix was emptied and dropped
    again = run_json(tiny_config, url, "runner.extract_shards=2")
    assert ran(again) == set() and "shards" not in again["stages"]["extract-gradients"]
