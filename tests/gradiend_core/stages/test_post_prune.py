"""post-prune: keeps the top-k input dims of the selected GRADIEND; every later stage reads it."""
import torch

from gradiend_core.checkpoint import load_gradiend


def test_keeps_top_half_and_feeds_the_later_stages(tiny_run):
    before = load_gradiend(tiny_run.out("select-seed") / "model")
    after = load_gradiend(tiny_run.out("post-prune") / "model")
    n = before.model.input_dim
    assert after.model.input_dim == (n + 1) // 2 == tiny_run.done["post-prune"]["info"]["input_dim"]
    kept = before.topk("decoder-weight", after.model.input_dim)  # base-global indices
    assert torch.equal(torch.sort(kept).values, after.param_map.local_to_global())
    rewrites = [sid for sid in tiny_run.steps if sid.startswith("rewrite-")]
    assert len(rewrites) == 2
    for sid in ("evaluate-encoder", "decoder-grid", *rewrites):
        assert tiny_run.steps[sid].inputs["model"] == "post-prune"
