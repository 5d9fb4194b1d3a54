"""compare: built on the shared tiny run's stored outputs (its two trained seeds stand in for two pairs:
each a GRADIEND with its evaluate-encoder table): the tables and summary, the report's plots and the
UI artifacts (matrices as tables, the suite report linking each pair's reports); and in a suite's plan
its inputs are every pair's selected GRADIEND (post-prune when enabled) and encoder evaluation."""
import json

import pytest

from gradiend_core.compare import CompareConfig, compare_gradiends, read_comparison
from gradiend_core.checkpoint import load_gradiend
from gradiend_core.experiment import load_experiment
from gradiend_core.stages.compare import STAGE
from gradiend_core.stages.plan import plan
from gradiend_core.stages.runner import run_report, run_stage

PAIRS = ["A-B", "C-D"]
CONF = {"compare": {"measures": ["cosine", "topk_overlap"], "topk": 20, "similarity_topk": None,
                    "value": "intersection_frac", "group_by": ["component"], "topk_parts": ["decoder-weight"]},
        "pairs": PAIRS}


@pytest.fixture(scope="module")
def built(tiny_run):
    inputs = {}
    for pid, seed in zip(PAIRS, (0, 1)):
        inputs[f"model_{pid}"] = tiny_run.done[f"train-seed-{seed}"]
        inputs[f"encoder_{pid}"] = tiny_run.done["evaluate-encoder"]
    m = run_stage(tiny_run.store, STAGE.name, STAGE.version, CONF, inputs, STAGE.build)
    return m, run_report(tiny_run.store, STAGE, m), inputs


def test_tables_are_the_comparison_of_the_stored_gradiends(tiny_run, built):
    m, _, inputs = built
    tables = read_comparison(m["path"])
    assert set(tables) == {"similarity", "topk", "cross_encoding", "pairwise_encoding", "anchor_aligned"}
    g = {pid: load_gradiend(f"{inputs[f'model_{pid}']['path']}/model") for pid in PAIRS}
    want = compare_gradiends(g, CompareConfig(measures=("cosine", "topk_overlap"), topk=20, group_by=("component",),
                                              topk_parts=("decoder-weight",)))
    assert tables["similarity"].equals(want.tables["similarity"]) and tables["topk"].equals(want.tables["topk"])
    sim = tables["similarity"]
    assert len(sim[(sim["group_by"] == "none") & (sim["measure"] == "cosine")]) == 4  # 2 x 2
    summary = json.loads(open(f"{m['path']}/summary.json").read())
    assert summary["gradiends"] == PAIRS and summary["similarity"]["cosine"]["A-B"]["A-B"] == pytest.approx(1.0)
    assert m["info"]["pairs"]["C-D"]["model"] == {"stage": "train-seed", "key": inputs["model_C-D"]["key"], "suffix": "1"}


def test_report_draws_every_heatmap_and_the_venn(built):
    _, report, _ = built
    drawn = {p.name for p in __import__("pathlib").Path(report["path"]).glob("*.png")}
    assert drawn == {"similarity_cosine_none.png", "similarity_cosine_component.png",
                     "similarity_topk_overlap_none.png", "similarity_topk_overlap_component.png",
                     "topk_venn_decoder-weight.png", "encoding_cross.png", "encoding_pairwise.png",
                     "encoding_anchor.png"}


def test_artifacts_tables_and_suite_report_with_each_pairs_links(built):
    m, report, _ = built
    specs = STAGE.report.artifacts(m, report, "Tiny Suite")
    by_key = {s["key"]: s for s in specs}
    assert by_key["tiny-suite-compare-cosine"]["kind"] == "table"
    assert [r["gradiend"] for r in by_key["tiny-suite-compare-cosine"]["content"]] == PAIRS
    md = by_key["tiny-suite-compare"]["content"]
    assert "tiny-suite-a-b-train-seed-0" in md and "tiny-suite-c-d-evaluate-encoder" in md
    assert md.count("data:image/png;base64") == 8


def test_in_a_suite_plan_it_reads_every_pairs_post_pruned_gradiend(tiny_run, tmp_path):
    import yaml

    exp = tiny_run.cfg.to_dict()
    exp["data"]["classes"] = {"3SG": ["he", "she"], "3PL": ["they"], "IT": ["it"]}
    exp["rewrite"] = {"targets": None, "target_class": None, "direction": "strengthen"}
    exp["suite"] = {"pairs": [["3SG", "3PL"], ["IT", "3PL"]]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))
    steps = plan(load_experiment(tmp_path / "s.yaml"))
    c = steps["compare"]
    assert c.inputs == {"model_3SG-3PL": "3SG-3PL/post-prune", "encoder_3SG-3PL": "3SG-3PL/evaluate-encoder",
                        "model_IT-3PL": "IT-3PL/post-prune", "encoder_IT-3PL": "IT-3PL/evaluate-encoder"}
    assert c.conf["pairs"] == ["3SG-3PL", "IT-3PL"] and list(steps)[-1] == "compare"
