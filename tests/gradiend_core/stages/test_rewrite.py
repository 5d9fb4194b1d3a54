"""rewrite: one step per request (both directions here, on the post-pruned GRADIEND); each saved model is
the base plus lr x the update of the cell the grid selected for its request, and loads as a fill-mask
pipeline."""
import pytest
import torch

from gradiend_core.checkpoint import load_gradiend
from gradiend_core.io import read_json
from gradiend_core.lm import load_base_model
from gradiend_core.manifests import load_prepared_model

STEPS = {"rewrite-3SG-strengthen": "3SG", "rewrite-3PL-weaken": "3PL_weaken"}


def test_one_step_per_request_each_with_its_own_key(tiny_run):
    from gradiend_core.stages.runner import hashed

    assert [sid for sid in tiny_run.steps if sid.startswith("rewrite")] == list(STEPS)
    assert [hashed(tiny_run.steps[sid].conf) for sid in STEPS] == [
        {"request": {"class": "3SG", "direction": "strengthen"}}, {"request": {"class": "3PL", "direction": "weaken"}}]
    assert len({tiny_run.steps[sid].key for sid in STEPS}) == 2


@pytest.mark.parametrize("sid", list(STEPS))
def test_saved_model_is_the_selected_update(tiny_run, sid):
    from transformers import pipeline

    info = tiny_run.done[sid]["info"]
    grid = read_json(tiny_run.out("decoder-grid") / "grid.json")
    chosen = grid["summary"][STEPS[sid]]
    assert info["selected"] == chosen and info["request"] == sid.removeprefix("rewrite-")
    assert chosen["strengthen"] == (info["direction"] == "strengthen")
    assert chosen["change_lo"] <= chosen["change"] <= chosen["change_hi"]
    base = load_prepared_model(tiny_run.done["prepare-model"])
    g = load_gradiend(tiny_run.out("post-prune") / "model", expected_digest=base.digest)
    want = g.rewrite(base.model, lr=chosen["learning_rate"], feature_factor=chosen["feature_factor"])
    got = load_base_model(tiny_run.out(sid) / "model").model
    for (name, a), (_, b) in zip(want.state_dict().items(), got.state_dict().items()):
        assert torch.equal(a, b), name
    fill = pipeline("fill-mask", model=str(tiny_run.out(sid) / "model"))
    assert len(fill("then [MASK] left .")) > 0


def test_the_weakening_request_uses_another_class_feature_factor(tiny_run):
    grid = read_json(tiny_run.out("decoder-grid") / "grid.json")
    weak = grid["summary"]["3PL_weaken"]
    assert weak["id"] == "base" or weak["feature_factor"] != grid["feature_factors"]["3PL"]
