"""Class order is data (the first class is label +1): it must survive JSON manifests and change keys."""
from pathlib import Path

from gradiend_core.experiment import load_experiment
from gradiend_core.stages.plan import plan, run_step
from gradiend_core.store import LocalStore


def _cfg(order):
    return load_experiment(None, [f"data.classes={{{order}}}", "data.max_per_class=20", "data.neutral_max=5"])


def test_swapping_class_order_changes_the_keys():
    a = plan(_cfg("3SG: [he, she, it], 3PL: [they]"))
    b = plan(_cfg("3PL: [they], 3SG: [he, she, it]"))
    assert a["create-data"].key != b["create-data"].key
    assert a["decoder-grid"].key != b["decoder-grid"].key
    # the rewrite's default request is the first class: a different request, a different step
    assert [s for s in a if s.startswith("rewrite")] == ["rewrite-3SG-strengthen"]
    assert [s for s in b if s.startswith("rewrite")] == ["rewrite-3PL-strengthen"]


def test_class_order_survives_a_manifest_read_from_disk(tmp_path):
    cfg = _cfg("3SG: [he, she, it], 3PL: [they]")
    p = plan(cfg)["create-data"]
    store = LocalStore(tmp_path)
    fresh = run_step(store, p, {})
    from_disk = store.load(p.stage, fresh["key"])  # manifests are written with sorted keys
    for m in (fresh, from_disk):
        assert [name for name, _ in m["info"]["classes"]] == ["3SG", "3PL"]
        assert m["info"]["labels"] == {"3SG": 1, "3PL": -1}


def test_settings_left_at_their_defaults_keep_the_keys():
    """data.preprocess / table_columns / table are out of the slice at their defaults: the keys of every
    experiment written before them stay valid (their rows are byte-identical)."""
    base = plan(load_experiment(None))
    assert not {"preprocess", "table_columns", "table"} & set(base["create-data"].conf["data"])
    same = plan(load_experiment(None, ["data.preprocess={sentences: false, dedup: true}", "data.table_columns=null"]))
    assert same["create-data"].key == base["create-data"].key
    other = plan(load_experiment(None, ["data.preprocess.sentences=true"]))
    assert other["create-data"].key != base["create-data"].key
    assert other["prepare-model"].key == base["prepare-model"].key  # head texts are not preprocessed


def _table_cfg(tmp_path, name, n=10):
    import pandas as pd

    rows = [{"masked": f"{m} number {i} .", "factual": w, "factual_class": c}
            for i in range(n) for m, w, c in (("[MASK] walked", "she", "3SG"), ("then [MASK] sat", "they", "3PL"))]
    pd.DataFrame(rows).to_csv(tmp_path / name, index=False)
    (tmp_path / "neutral.txt").write_text("the sun was warm .\n")
    return load_experiment(None, ["data.builtin=null", f"data.table={tmp_path / name}",
                                  f"data.neutral_corpus={tmp_path / 'neutral.txt'}"])


def test_a_table_is_keyed_by_content_and_built_into_the_same_files(tmp_path):
    a = plan(_table_cfg(tmp_path, "a.csv"))["create-data"]
    assert plan(_table_cfg(tmp_path, "b.csv"))["create-data"].key == a.key   # same content, other path
    assert plan(_table_cfg(tmp_path, "c.csv", n=11))["create-data"].key != a.key
    m = run_step(LocalStore(tmp_path / "store"), a, {})
    assert [list(c) for c in m["info"]["classes"]] == [["3SG", ["she"]], ["3PL", ["they"]]] and m["info"]["labels"]["3SG"] == 1
    assert m["info"]["summary"]["n_rows"] == 20 and m["info"]["summary"]["neutral"] == 1
    assert sorted(p.name for p in Path(m["path"]).iterdir()) == ["manifest.json", "neutral.parquet",
                                                                "summary.json", "training.parquet"]
