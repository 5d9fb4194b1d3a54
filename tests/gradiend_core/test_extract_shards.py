"""Row shards of extract-gradients without Prefect: the shard count is in no key, shards own disjoint
row blocks, a sharded run that died half way resumes from the blocks its shards recorded, and on a URL
store shards on other hosts publish the one-task output."""
from pathlib import Path

import pytest
import yaml

from gradiend_core.errors import ConfigError, StoreError
from gradiend_core.experiment import load_experiment
from gradiend_core import extraction as xg
from gradiend_core.stages import extract_shards as xs
from gradiend_core.stages.plan import plan, run_step
from gradiend_core.store import LocalStore, UrlStore
from gradiend_core.testing import tiny_experiment


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import save_tiny, tiny_mlm

    d = tmp_path_factory.mktemp("shards")
    model_dir = save_tiny(*tiny_mlm(seed=0, hidden=32, layers=2, words=builtin_vocabulary()), d / "tiny-bert")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_experiment(model_dir)))
    return d / "tiny.yaml"


def test_shard_count_is_in_no_key(config):
    keys = {sid: s.key for sid, s in plan(load_experiment(config)).items()}
    assert {sid: s.key for sid, s in plan(load_experiment(config, ["runner.extract_shards=5"])).items()} == keys
    with pytest.raises(ConfigError, match="runner.extract_shards must be > 0"):
        load_experiment(config, ["runner.extract_shards=0"])


def test_split_is_contiguous_disjoint_and_complete():
    starts = list(range(0, 80, 8))
    for n in (1, 3, 4, 10, 25):
        parts = xs.split(starts, n)
        assert [r for p in parts for r in p] == starts and all(parts) and len(parts) == min(n, len(starts))
    assert xs.split([], 3) == []


def upstream(config: Path, store: LocalStore) -> tuple[dict, dict]:
    """The extract-gradients plan step and its input manifests (prepare-model, create-data)."""
    steps, done = plan(load_experiment(config)), {}
    for sid in ("prepare-model", "create-data"):
        done[sid] = run_step(store, steps[sid], {})
    x = steps["extract-gradients"]
    return x, {n: done[i] for n, i in x.inputs.items()}


def test_killed_sharded_run_resumes_from_recorded_blocks(config, tmp_path, monkeypatch):
    clean_store = LocalStore(tmp_path / "clean")
    x, inputs = upstream(config, clean_store)
    clean = run_step(clean_store, x, inputs)

    store = LocalStore(tmp_path / "store")
    x, inputs = upstream(config, store)
    with store.lock(x.stage, x.key):  # what the flow holds from prepare to finalize
        first = xs.prepare(store, x.decl, x.conf, inputs, shards=3)
        assert first["key"] == x.key and len(first["blocks"]) == 3
        xs.shard(store, x.conf, inputs, first, 0)  # shard 0 finished, then the run died
    assert (x.stage, x.key) not in set(store.outputs())  # nothing published

    extracted = []
    original = xg.extract_block
    monkeypatch.setattr(xg, "extract_block", lambda ex, block, *a: extracted.append(int(block["store_row"].iloc[0]))
                        or original(ex, block, *a))
    with store.lock(x.stage, x.key):
        again = xs.prepare(store, x.decl, x.conf, inputs, shards=2)  # another shard count: blocks are the unit
        assert not Path(first["staging"]).exists()  # the dead run's staging dir, adopted (renamed)
        parts = [xs.shard(store, x.conf, inputs, again, i) for i in range(len(again["blocks"]))]
        m = xs.finalize(store, x.conf, inputs, again, parts)
    assert sorted(extracted) == [r for b in first["blocks"][1:] for r in b]  # shard 0's blocks not redone
    assert not m["cached"] and m["key"] == clean["key"]
    assert {r: f["sha256"] for r, f in m["files"].items()} == {r: f["sha256"] for r, f in clean["files"].items()}
    assert store.leftovers() == [] and not store.problems(x.stage, m["key"], deep=True)
    with store.lock(x.stage, x.key):
        assert xs.prepare(store, x.decl, x.conf, inputs, shards=2)["cached"]["cached"] is True


def test_finalize_refuses_missing_blocks(config, tmp_path):
    store = LocalStore(tmp_path / "store")
    x, inputs = upstream(config, store)
    with store.lock(x.stage, x.key):
        p = xs.prepare(store, x.decl, x.conf, inputs, shards=2)
        part = xs.shard(store, x.conf, inputs, p, 0)
        with pytest.raises(StoreError, match="were not written by any shard; re-run the flow"):
            xs.finalize(store, x.conf, inputs, p, [part])
    assert not store.is_valid(x.stage, x.key)


def test_url_store_shards_on_other_hosts_publish_the_one_task_output(config, tmp_path, monkeypatch):
    clean_store = LocalStore(tmp_path / "clean")
    x, inputs = upstream(config, clean_store)
    clean = run_step(clean_store, x, inputs)

    url = (tmp_path / "shared").as_uri()
    hosts = [UrlStore(url, cache=tmp_path / f"host-{h}") for h in "abc"]  # a: prepare, finalize; b, c: shards
    x, inputs = upstream(config, hosts[0])
    put, puts = UrlStore._put, []
    monkeypatch.setattr(UrlStore, "_put", lambda self, src, dest: puts.append(dest) or put(self, src, dest))
    with hosts[0].lock(x.stage, x.key):
        plan_ = xs.prepare(hosts[0], x.decl, x.conf, inputs, shards=2)
        prepared = len(puts)
        parts = [xs.shard(hosts[1 + i], x.conf, inputs, plan_, i) for i in range(2)]
        uploaded = len(puts)
        m = xs.finalize(hosts[0], x.conf, inputs, plan_, parts)
    by_shards = [d.split("/.staging-", 1)[1].split("/", 1)[1] for d in puts[prepared:uploaded]]
    assert by_shards and all(  # only what they added: chunks, progress, records (never the shared files)
        d.startswith(tuple(f"gradients.zarr/{k}/c/" for k in ("factual", "alternative", "factual_scale",
                                                               "alternative_scale")) + ("progress-shard-", ".records/"))
        for d in by_shards), by_shards
    assert [d.rsplit("/", 1)[-1] for d in puts[uploaded:]] == ["manifest.json"]  # finalize moved them, manifest last
    assert m["key"] == clean["key"] and not any(r.startswith("progress") for r in m["files"])
    assert {r: f["sha256"] for r, f in m["files"].items()} == {r: f["sha256"] for r, f in clean["files"].items()}
    assert all(h.leftovers() == [] for h in hosts)
    assert hosts[2].problems(x.stage, m["key"], deep=True) == []  # any host downloads the same bytes
