"""rewrite: the saved model is the base plus lr x the decoder's output at the selected cell, and loads as
a fill-mask pipeline."""
import torch

from gradiend_core.checkpoint import load_gradiend
from gradiend_core.io import read_json
from gradiend_core.lm import load_base_model
from gradiend_core.manifests import load_prepared_model


def test_saved_model_is_the_selected_update(tiny_run):
    from transformers import pipeline

    info = tiny_run.done["rewrite"]["info"]
    chosen = read_json(tiny_run.out("decoder-grid") / "grid.json")["summary"][info["target_class"]]
    assert info["selected"] == chosen
    base = load_prepared_model(tiny_run.done["prepare-model"])
    g = load_gradiend(tiny_run.out("post-prune") / "model", expected_digest=base.digest)
    want = g.rewrite(base.model, lr=chosen["learning_rate"], feature_factor=chosen["feature_factor"])
    got = load_base_model(tiny_run.out("rewrite") / "model").model
    for (name, a), (_, b) in zip(want.state_dict().items(), got.state_dict().items()):
        assert torch.equal(a, b), name
    fill = pipeline("fill-mask", model=str(tiny_run.out("rewrite") / "model"))
    assert len(fill("then [MASK] left .")) > 0
