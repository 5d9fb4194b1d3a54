"""The word-embedding gradient formed at selected entries only equals autograd's dense gradient
(tied MLM decoder and tied CLM lm_head; full and pruned selections; shared factual/alternative pass)."""
import pytest
import torch

from gradiend_core.embedding_grad import EmbeddingGrad
from gradiend_core.gradients import GradientExtractor
from gradiend_core.lm import BaseLM, weights_digest
from gradiend_core.param_map import select_parameters
from gradiend_core.testing import tiny_clm, tiny_mlm

MASKED = ["the doctor said that [MASK] was tired .", "[MASK] went to the park", "they said [MASK] saw the sun ."]
FACTUAL, ALTERNATIVE = ["he", "she", "he"], ["they", "they", "they"]


@pytest.fixture(scope="module", params=["mlm", "clm"])
def base(request):
    model, tok = tiny_mlm() if request.param == "mlm" else tiny_clm()
    model = model.double()  # the comparison then tests the formula, not float32 summation order
    return BaseLM(model, tok, request.param, f"tiny-{request.param}", weights_digest(model))


def _dense(base, pmap):
    """The plain path: every parameter through autograd (the sparse embedding path switched off)."""
    ex = GradientExtractor(base, pmap, per_example="loop")
    ex._emb, ex._emb_pos, ex._autograd_params = None, None, ex.params
    return ex


def _pruned(pmap, seed=0):
    """A random ~30% selection that surely includes entries of the target and text token rows."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.nonzero(torch.rand(pmap.input_dim, generator=g) < 0.3).reshape(-1)
    return pmap.select(keep)


def test_the_model_is_tied_and_the_sparse_path_is_used(base):
    ex = GradientExtractor(base, select_parameters(base.model))
    assert isinstance(ex._emb, EmbeddingGrad) and ex._emb.decoder is not None  # tied: both terms
    assert ex.params[ex._emb_pos] is base.model.get_input_embeddings().weight


@pytest.mark.parametrize("strategy", ["hooks", "loop"])
@pytest.mark.parametrize("prune", [False, True])
def test_pair_gradients_equal_autograd(base, prune, strategy):
    pmap = select_parameters(base.model)
    pmap = _pruned(pmap) if prune else pmap
    fast, slow = GradientExtractor(base, pmap, per_example=strategy), _dense(base, pmap)
    assert fast._emb is not None
    f1, a1 = fast.pair_gradients(MASKED, FACTUAL, ALTERNATIVE)
    f2, a2 = slow.pair_gradients(MASKED, FACTUAL, ALTERNATIVE)
    for got, want in ((f1, f2), (a1, a2)):
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # the embedding block is where the two terms live: it must not be all zeros
    spec = pmap.specs[fast._emb_pos]
    off = sum(s.n_selected for s in pmap.specs[:fast._emb_pos])
    assert float(f1[:, off:off + spec.n_selected].abs().max()) > 0


@pytest.mark.parametrize("strategy", ["hooks", "loop"])
def test_example_gradients_equal_autograd(base, strategy):
    pmap = _pruned(select_parameters(base.model), seed=1)
    got = GradientExtractor(base, pmap, per_example=strategy).example_gradients(MASKED, ALTERNATIVE)
    want = _dense(base, pmap).example_gradients(MASKED, ALTERNATIVE)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("strategy", ["hooks", "loop"])
def test_hooks_are_removed_and_requires_grad_restored(base, strategy):
    ex = GradientExtractor(base, select_parameters(base.model), per_example=strategy)
    w = base.model.get_input_embeddings().weight
    ex.pair_gradients(MASKED[:2], FACTUAL[:2], ALTERNATIVE[:2])
    assert w.requires_grad and not base.model.get_input_embeddings()._forward_hooks
    assert all(p.requires_grad for p in ex.params)
    assert not any(m._forward_hooks for m in base.model.modules())


def test_untied_or_unselected_embeddings_take_the_plain_path(base):
    pattern = "*.word_embeddings.*" if base.objective.name == "mlm" else "*.wte.*"
    pmap = select_parameters(base.model, exclude=[pattern])
    assert GradientExtractor(base, pmap)._emb is None
