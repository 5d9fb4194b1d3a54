"""A suite through the CLI on a tiny model with three classes: every pair's steps have the single-pair
run's keys (and the two reuse each other's outputs), the comparison's tables, the caching rules (adding
a pair runs that pair and the comparison, removing one only the comparison, an unchanged re-run
nothing) and bad suite input (one line, exit 2, nothing built). One sequence of runs serves every test."""
import contextlib
import io
import json

import pandas as pd
import pytest
import yaml

from gradiend_core.testing import tiny_experiment

CLASSES = {"3SG": ["he", "she"], "3PL": ["they"], "IT": ["it"]}
ALL = ["3SG-3PL", "3SG-IT", "3PL-IT"]  # `all`: the classes' order
FIRST = [["3SG", "3PL"], ["3SG", "IT"]]
FEWER = [["3SG", "3PL"], ["3PL", "IT"]]
PAIR_STAGES = {"extract-gradients", "pre-prune", "train-seed", "select-seed", "evaluate-encoder"}


def experiment(model_dir, suite: dict | None) -> dict:
    exp = tiny_experiment(model_dir, name="tiny-suite")
    exp["data"].update(classes=CLASSES, max_per_class=12, neutral_max=6)
    exp["extract"].update(max_neutral_rows=4, max_training_masked_rows=4)
    exp["train"].update(max_seeds=1, max_steps=8)
    if suite is not None:
        exp["suite"] = {"compare": {"measures": ["cosine", "topk_overlap"], "topk": 50}, **suite}
    return exp


def cli(argv: list[str]) -> tuple[int, str, str]:
    from flows.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def run(d, name: str, exp: dict) -> dict:
    (d / name).write_text(yaml.safe_dump(exp, sort_keys=False))  # keep the class order
    code, out, err = cli(["run", str(d / name), "--store", str(d / "store"), "--json"])
    assert code == 0, err.strip().splitlines()[-3:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(prefect_home, tiny_model_dir, tmp_path_factory):
    """first: two pairs; added: all three; again: unchanged; fewer: one pair removed; single: 3PL-IT alone."""
    d = tmp_path_factory.mktemp("suite")
    out = {"first": run(d, "first.yaml", experiment(tiny_model_dir, {"pairs": FIRST})),
           "added": run(d, "suite.yaml", experiment(tiny_model_dir, {"pairs": "all"}))}
    out["again"] = run(d, "suite.yaml", experiment(tiny_model_dir, {"pairs": "all"}))
    out["fewer"] = run(d, "fewer.yaml", experiment(tiny_model_dir, {"pairs": FEWER}))
    single = experiment(tiny_model_dir, None)
    single["train"]["pair"] = ["3PL", "IT"]
    out["single"] = run(d, "single.yaml", single)
    alone = experiment(tiny_model_dir, None)  # 3SG-3PL by itself in a store of its own
    alone["train"]["pair"] = ["3SG", "3PL"]
    (d / "alone").mkdir()
    out["alone"] = run(d / "alone", "alone.yaml", alone)
    return out


def ran(summary: dict) -> set[str]:
    return {sid for sid, st in summary["stages"].items() if not st["cached"]}


def test_one_flow_runs_every_pair_and_shares_the_common_steps(runs):
    s = runs["added"]
    assert set(s["pairs"]) == set(s["metrics"]) == set(ALL)  # (--json sorts keys: summary.json keeps the order)
    stages = s["stages"]
    assert stages["prepare-model"]["stage"] == "prepare-model" and stages["create-data"]["stage"] == "create-data"
    for pid in ALL:
        mine = {stages[sid]["stage"] for sid in s["pairs"][pid]["steps"]}
        assert mine == PAIR_STAGES  # no decoder grid nor rewrite (suite.rewrite: false)
        assert f"{pid}/train-seed-0" in stages
    assert len({stages[f"{pid}/select-seed"]["key"] for pid in ALL}) == 3
    assert s["rewrites"] == []


def test_a_pair_has_the_single_pair_runs_keys_and_they_reuse_each_other(runs):
    suite, single = runs["added"]["stages"], runs["single"]["stages"]
    for sid, st in single.items():
        if st["stage"] in ("decoder-grid", "rewrite"):
            assert not st["cached"]  # the suite ran neither
            continue
        ours = sid if sid in ("prepare-model", "create-data") else f"3PL-IT/{sid}"
        assert suite[ours]["key"] == st["key"] and st["cached"], sid


def stored_rows(summary: dict, sid: str) -> int:
    from gradiend_core.store import open_store

    return open_store(summary["store"]).load("extract-gradients", summary["stages"][sid]["key"])["info"]["n_rows"]


def test_the_pairs_extract_in_one_pass_each_row_computed_once(runs):
    from gradiend_core.store import open_store

    first, added = runs["first"], runs["added"]
    n = stored_rows(first, "3SG-3PL/extract-gradients")
    one = first["shared"]["extract-gradients-shared"]
    assert one["steps"] == ["3SG-3PL/extract-gradients", "3SG-IT/extract-gradients"]
    assert len(one["built"]) == 2 and one["rows_computed"] == n  # two stores of n rows each, n rows computed
    assert stored_rows(first, "3SG-IT/extract-gradients") == n
    dims = [open_store(first["store"]).load("extract-gradients", first["stages"][sid]["key"])["info"]["dim"]
            for sid in one["steps"]]
    assert one["union_dim"] > max(dims)  # the pairs keep different dims: each store is cut from the union
    assert all(first["stages"][sid]["shared"] == "extract-gradients-shared" for sid in one["steps"])
    added_one = added["shared"]["extract-gradients-shared"]  # the added pair's store alone, its rows once
    assert added_one["built"] == [added["stages"]["3PL-IT/extract-gradients"]["key"]]
    assert added_one["rows_computed"] == n
    assert "shared" not in runs["again"] and "shared" not in runs["fewer"]


def test_a_store_built_in_one_pass_is_byte_identical_to_the_pairs_own(runs):
    import hashlib

    from gradiend_core.store import open_store

    def files(summary, sid):
        root = open_store(summary["store"]).path("extract-gradients", summary["stages"][sid]["key"])
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}

    suite, alone = files(runs["first"], "3SG-3PL/extract-gradients"), files(runs["alone"], "extract-gradients")
    assert any(f.startswith("gradients.zarr/factual") for f in suite) and suite == alone


def test_the_comparison_tables(runs):
    c = runs["added"]["comparison"]
    assert c["tables"] == ["anchor_aligned", "cross_encoding", "pairwise_encoding", "similarity", "topk"]
    from gradiend_core.compare import read_comparison

    tables = read_comparison(c["dir"])
    sim = tables["similarity"]
    flat = sim[sim["group_by"] == "none"]
    assert set(flat["measure"]) == {"cosine", "topk_overlap"}
    for _, m in flat.groupby("measure"):
        assert len(m) == 9 and set(m["row_id"]) == set(m["col_id"]) == set(ALL)  # 3 x 3
    assert {"layer", "component"} <= set(sim["group_by"])
    assert set(tables["topk"]["gradiend_id"]) == set(ALL)
    assert tables["cross_encoding"].groupby("gradiend_id").size().to_dict() == {pid: 3 for pid in ALL}
    summary = json.loads(open(f"{c['dir']}/summary.json").read())
    assert summary["gradiends"] == ALL and set(summary["similarity"]["cosine"]) == set(ALL)
    assert all(summary["similarity"]["cosine"][p][p] == pytest.approx(1.0) for p in ALL)


def test_adding_a_pair_runs_that_pair_and_the_comparison_only(runs):
    s = runs["added"]
    assert ran(runs["first"]) == set(runs["first"]["stages"])  # a fresh store: everything ran
    assert ran(s) == set(s["pairs"]["3PL-IT"]["steps"]) | {"compare"}


def test_an_unchanged_rerun_runs_nothing_and_removing_a_pair_only_the_comparison(runs):
    assert ran(runs["again"]) == set()
    assert ran(runs["fewer"]) == {"compare"}
    assert runs["fewer"]["comparison"]["key"] not in (runs["added"]["comparison"]["key"],
                                                      runs["first"]["comparison"]["key"])


def test_the_comparison_report_draws_every_heatmap(runs):
    from gradiend_core.store import open_store

    st = runs["first"]["stages"]["compare"]
    report = st["report"]
    path = open_store(runs["first"]["store"]).path("compare-report", report["key"])
    drawn = sorted(p.name for p in path.glob("*.png"))
    assert "topk_venn_decoder-weight.png" in drawn  # two GRADIENDs
    assert {f"similarity_{m}_{by}.png" for m in ("cosine", "topk_overlap") for by in ("none", "layer", "component")} \
        <= set(drawn)
    assert {f"encoding_{k}.png" for k in ("cross", "pairwise", "anchor")} <= set(drawn)


@pytest.mark.parametrize("suite, says", [
    ({"pairs": [["3SG", "2"]]}, "'2' is not a data class"),
    ({"pairs": [["3SG", "3SG"], ["3SG", "IT"]]}, "must name two different classes"),
    ({"pairs": "all", "overrides": {"3SG-3PL": {"train": {"max_step": 5}}}}, "unknown key 'max_step'"),
    ({"pairs": "all", "overrides": {"3SG-2": {"train": {"max_steps": 5}}}}, "'3SG-2' is not a pair of the suite"),
])
def test_bad_suite_input_is_one_line_exit_2_and_builds_nothing(prefect_home, tiny_model_dir, tmp_path, suite, says):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(experiment(tiny_model_dir, suite), sort_keys=False))
    code, _, err = cli(["run", str(tmp_path / "bad.yaml"), "--store", str(tmp_path / "store")])
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and says in lines[0], err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_a_suite_too_big_for_the_disk_is_refused_for_all_its_pairs_before_any_stage(prefect_home, tiny_model_dir,
                                                                                    tmp_path, monkeypatch):
    """The pairs extract in one pass, so the disk check counts every pair's store."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(2**30, 2**30 - 1000, 1000))
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(experiment(tiny_model_dir, {"pairs": "all"}), sort_keys=False))
    code, _, err = cli(["run", str(tmp_path / "suite.yaml"), "--store", str(tmp_path / "store")])
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "the extractions of 3 pairs need up to" in lines[0], err
    assert "pair fewer classes" in lines[0]
    assert not any(p.is_dir() for p in (tmp_path / "store").glob("*"))  # no stage output, no staging dir
