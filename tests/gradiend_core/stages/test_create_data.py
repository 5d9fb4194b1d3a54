"""Class order is data (the first class is label +1): it must survive JSON manifests and change keys."""
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
