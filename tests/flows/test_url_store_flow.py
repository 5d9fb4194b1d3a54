"""The flow on a store at a URL (file://) shared by two "hosts", each with its own local cache."""
import json
from pathlib import Path

from flows.cli import main
from gradiend_core.io import sha256_file
from gradiend_core.store import open_store


def ran(summary) -> set[str]:
    return {sid for sid, st in summary["stages"].items() if not st["cached"]}


def test_two_hosts_share_a_url_store(run_json, prefect_home, tiny_config, tmp_path, monkeypatch, capsys):
    url = (tmp_path / "shared").as_uri()
    monkeypatch.setenv("GRADIEND_FLOW_CACHE", str(tmp_path / "host-a"))
    a = run_json(tiny_config, url)
    assert ran(a) == set(a["stages"])  # host A: everything built and uploaded
    assert a["store"] == url and a["rewritten_model"].startswith(f"{url}/rewrite/")

    monkeypatch.setenv("GRADIEND_FLOW_CACHE", str(tmp_path / "host-b"))
    b = run_json(tiny_config, url)
    assert ran(b) == set()  # host B: nothing rebuilt ...
    assert {k: v["key"] for k, v in b["stages"].items()} == {k: v["key"] for k, v in a["stages"].items()}
    store = open_store(url)
    assert store.root.is_relative_to(tmp_path / "host-b")
    outputs = list(store.outputs())
    assert len(outputs) == len(a["stages"]) + sum("report" in st for st in a["stages"].values())  # + plots
    for stage, key in outputs:  # ... but every output downloaded, byte-identical to what A published
        if stage.endswith("-report"):  # plots found in the store are not drawn again: fetched on demand
            store.fetch(stage, key)
        m = store.manifest(stage, key)
        assert {rel: sha256_file(store.path(stage, key) / rel) for rel in m["files"]} == \
            {rel: f["sha256"] for rel, f in m["files"].items()}, (stage, key)

    # the store commands work on the URL
    assert main(["status", str(tiny_config), "--store", url]) == 0
    assert all(line.split()[-1] == "cached" for line in capsys.readouterr().out.strip().splitlines())
    key = a["stages"]["decoder-grid"]["key"]
    assert main(["show", key[:8], "--store", url]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["key"] == key and shown["path"] == f"{url}/decoder-grid/{key}"
    assert main(["verify", "--store", url]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{len(outputs)} outputs checked, 0 corrupted or incomplete")
    assert main(["gc", str(tiny_config), "--store", url, "--dry-run"]) == 0
    assert "0 directories to remove" in capsys.readouterr().out

    # a corrupted file in the shared store: found by its digest, that output alone rebuilt and re-uploaded
    target = tmp_path / "shared" / "create-data" / a["stages"]["create-data"]["key"] / "training.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size
    target.write_bytes(bytes(data))
    assert main(["verify", "--store", url]) == 1
    assert "content digest mismatch" in capsys.readouterr().out
    assert ran(run_json(tiny_config, url)) == {"create-data"}
    assert main(["verify", "--store", url]) == 0


def test_unknown_store_protocol_fails_before_any_stage(capsys, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIEND_FLOW_CACHE", str(tmp_path / "cache"))
    assert main(["run", str(tiny_config), "--store", "nosuch://bucket/prefix"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown protocol 'nosuch://'" in err[0] and "file:///" in err[0], err
    assert not Path(tmp_path / "cache").exists()  # nothing ran, nothing was cached
