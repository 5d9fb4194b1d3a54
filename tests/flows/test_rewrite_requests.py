"""Several rewrite requests through the flow, on a post-pruned GRADIEND: one step (and one saved model)
per request, both directions, every model in the summary, the CLI text and the run report, each loadable
as a fill-mask pipeline. One flow run (module fixture) serves every test."""
from pathlib import Path

import pytest
import torch
import yaml

from gradiend_core.testing import tiny_experiment

REQUESTS = [{"class": "3SG", "direction": "strengthen"}, {"class": "3PL", "direction": "weaken"}]
STEPS = {"rewrite-3SG-strengthen": "3SG", "rewrite-3PL-weaken": "3PL_weaken"}  # step -> grid summary entry


@pytest.fixture(scope="module")
def run(prefect_home, tiny_model_dir, tmp_path_factory):
    from flows.api import run_experiment

    d = tmp_path_factory.mktemp("rewrite-requests")
    exp = tiny_experiment(tiny_model_dir)
    exp["post_prune"] = {"enabled": True, "topk": 0.5}
    exp["rewrite"] = {"targets": REQUESTS}
    (d / "tiny.yaml").write_text(yaml.safe_dump(exp))
    return run_experiment(d / "tiny.yaml", store=d / "store")


def manifest(run, sid: str) -> dict:
    from gradiend_core.store import open_store

    return open_store(run.store).load(run.summary["stages"][sid]["stage"], run.summary["stages"][sid]["key"])


def selected_update(run, sid: str):
    """(the base model plus the update of the grid's cell for this step's request, from the post-pruned
    GRADIEND; that GRADIEND; the base model; the grid's summary entry)."""
    from gradiend_core.checkpoint import load_gradiend
    from gradiend_core.io import read_json
    from gradiend_core.manifests import load_prepared_model

    chosen = read_json(run.output("decoder-grid") / "grid.json")["summary"][STEPS[sid]]
    base = load_prepared_model(manifest(run, "prepare-model"))
    g = load_gradiend(run.output("post-prune") / "model", expected_digest=base.digest)
    want = g.rewrite(base.model, lr=chosen["learning_rate"], feature_factor=chosen["feature_factor"])
    return want, g, base.model, chosen


def test_one_rewrite_step_and_model_per_request(run):
    assert [sid for sid in run.summary["stages"] if sid.startswith("rewrite")] == list(STEPS) == run.rewrites()
    listed = run.summary["rewrites"]
    assert [(r["id"], r["class"], r["direction"]) for r in listed] == [
        ("rewrite-3SG-strengthen", "3SG", "strengthen"), ("rewrite-3PL-weaken", "3PL", "weaken")]
    assert len({r["model"] for r in listed}) == 2 and run.summary["rewritten_model"] == listed[0]["model"]
    for r in listed:
        assert Path(r["model"], "config.json").is_file()
        sel = r["selected"]
        assert sel["change_lo"] <= sel["change"] <= sel["change_hi"] and "lms_p" in sel


@pytest.mark.parametrize("sid", list(STEPS))
def test_each_direction_saves_its_selected_update_and_loads_as_fill_mask(run, sid):
    from transformers import pipeline

    want, _, _, chosen = selected_update(run, sid)
    model, _ = run.load_model(sid)
    for (name, a), (_, b) in zip(want.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name
    assert chosen["strengthen"] == sid.endswith("strengthen")
    fill = pipeline("fill-mask", model=str(run.output(sid) / "model"))
    assert len(fill("the doctor said [MASK] was late .")) > 0


def test_the_rewrites_use_the_post_pruned_gradiend(run):
    """Only the entries the post-pruned GRADIEND kept can differ from the base model."""
    from gradiend_core.checkpoint import load_gradiend

    full = load_gradiend(run.output("select-seed") / "model")
    for sid in STEPS:
        assert manifest(run, sid)["upstream"]["model"] == run.summary["stages"]["post-prune"]["key"]
        _, g, base, chosen = selected_update(run, sid)
        assert g.model.input_dim < full.model.input_dim
        saved, _ = run.load_model(sid)
        saved_params = dict(saved.named_parameters())  # tied tensors once (not state_dict: embeddings twice)
        changed = sum(int((p != saved_params[n]).sum()) for n, p in base.named_parameters())
        assert 0 < changed <= g.model.input_dim or chosen["id"] == "base"


def test_cli_text_and_run_report_list_every_rewritten_model(run):
    from flows.cli import render_summary
    from gradiend_core.reports.run import run_report_markdown

    text = render_summary(run.summary)
    md = run_report_markdown(run.summary, {}, {}, "tiny")
    for r in run.summary["rewrites"]:
        assert r["model"] in text and r["model"] in md
    assert "rewrite (strengthen 3SG): P(3SG) on other-class rows" in text
    assert "rewrite (weaken 3PL): 1 - P(3PL) on 3PL rows" in text
