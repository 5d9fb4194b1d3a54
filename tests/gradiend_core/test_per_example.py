"""Per-example gradients from one padded batch pass (per_example.py) equal one autograd pass per row."""
import pytest
import torch
from torch import nn

from gradiend_core.errors import ConfigError
from gradiend_core.gradients import GradientExtractor
from gradiend_core.lm import BaseLM, weights_digest
from gradiend_core.param_map import select_parameters
from gradiend_core.per_example import LayerHooks, per_example_grad
from gradiend_core.testing import _wordpiece_tokenizer, tiny_mlm, tiny_vocab_words

MASKED = ["the doctor said that [MASK] was tired .", "[MASK] went to the park",
          "yesterday the nurse told my friend that [MASK] would come again tomorrow ."]


def _loop_vs_autograd(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, *shape) weight gradients of sum(out * c_i) per example, one autograd pass each."""
    out = []
    for i in range(x.shape[0]):
        mod.zero_grad()
        y = mod(x[i:i + 1])
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
        out.append(mod.weight.grad.clone())
    return torch.stack(out)


@pytest.mark.parametrize("kind", ["linear", "conv1d", "layernorm", "embedding"])
def test_formula_matches_autograd_per_example(kind):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    B, T, H = 3, 5, 6
    if kind == "embedding":
        mod, x = nn.Embedding(11, H).double(), torch.randint(0, 11, (B, T))
        x[0, :3] = 4  # a repeated id: its rows accumulate
    else:
        mod = {"linear": nn.Linear(H, 4), "conv1d": Conv1D(4, H), "layernorm": nn.LayerNorm(H)}[kind].double()
        x = torch.randn(B, T, H, dtype=torch.float64) * 3 + 1
    want = _loop_vs_autograd(mod, x)
    y = mod(x)
    dy = torch.linspace(-1, 1, y[0].numel(), dtype=y.dtype).reshape(y[0].shape).expand_as(y)
    got = per_example_grad(mod, "weight", x, dy)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if kind != "embedding":
        torch.testing.assert_close(per_example_grad(mod, "bias", x, dy), dy.sum(1))


def _base(model, tok, objective="mlm"):
    model = model.double()  # equality then tests the formulas, not float32 summation order
    return BaseLM(model, tok, objective, "tiny", weights_digest(model))


@pytest.fixture(scope="module")
def bert():
    return _base(*tiny_mlm())


def test_auto_uses_hooks_and_matches_the_loop_with_multi_token_targets(bert):
    pmap = select_parameters(bert.model)
    hooks = GradientExtractor(bert, pmap)
    loop = GradientExtractor(bert, pmap, per_example="loop")
    assert hooks.per_example == "hooks"
    # 'zqxv' is four subtokens: four masks (four labels) in that row, and factual/alternative
    # encodings differ, so the pair takes two batched passes
    fact, alt = ["he", "zqxv", "they"], ["they", "she", "he"]
    for got, want in zip(hooks.pair_gradients(MASKED, fact, alt), loop.pair_gradients(MASKED, fact, alt)):
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # same subtoken counts: one forward serves both labels
    fact, alt = ["he", "she", "he"], ["they", "they", "they"]
    for got, want in zip(hooks.pair_gradients(MASKED, fact, alt), loop.pair_gradients(MASKED, fact, alt)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_a_tensor_of_an_unsupported_module_falls_back_to_the_loop():
    base = _base(*tiny_mlm())
    emb = base.model.bert.embeddings
    emb.register_parameter("scale", nn.Parameter(torch.ones(1, dtype=torch.float64)))  # owned by no Linear etc.
    pmap = select_parameters(base.model)
    assert "bert.embeddings.scale" in pmap.names
    assert GradientExtractor(base, pmap).per_example == "loop"
    with pytest.raises(ConfigError, match="use 'loop'"):
        GradientExtractor(base, pmap, per_example="hooks")
    assert LayerHooks.for_model(base.model, pmap.names) is None


def test_shared_layers_and_a_full_sequence_head_albert():
    """ALBERT calls one layer's Linear modules once per layer (gradients add over calls) and its MLM
    head is not separable (the full (B, T, V) logits run)."""
    from transformers import AlbertConfig, AlbertForMaskedLM

    tok = _wordpiece_tokenizer(tiny_vocab_words())
    cfg = AlbertConfig(vocab_size=len(tok), embedding_size=16, hidden_size=32, num_hidden_layers=3,
                       num_attention_heads=2, intermediate_size=48, max_position_embeddings=64,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    base = _base(AlbertForMaskedLM(cfg).eval(), tok)
    pmap = select_parameters(base.model)
    hooks, loop = GradientExtractor(base, pmap), GradientExtractor(base, pmap, per_example="loop")
    assert hooks.per_example == "hooks"
    fact, alt = ["he", "she", "he"], ["they", "they", "they"]
    for got, want in zip(hooks.pair_gradients(MASKED, fact, alt), loop.pair_gradients(MASKED, fact, alt)):
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_only_some_layers_selected_uses_the_input_embedding_as_driver(bert):
    pmap = select_parameters(bert.model, include=["*.layer.1.*"])
    hooks, loop = GradientExtractor(bert, pmap), GradientExtractor(bert, pmap, per_example="loop")
    assert hooks.per_example == "hooks" and hooks._hooks.driver is bert.model.get_input_embeddings()
    got, want = hooks.example_gradients(MASKED, ["he", "she", "they"]), loop.example_gradients(MASKED, ["he", "she", "they"])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_float32_batch_is_close_to_the_loop():
    """The production dtype: the batched pass sums in another order, nothing more."""
    model, tok = tiny_mlm()
    base = BaseLM(model, tok, "mlm", "tiny", weights_digest(model))
    pmap = select_parameters(base.model)
    keep = torch.arange(0, pmap.input_dim, 7)
    pmap = pmap.select(keep)
    fact, alt = ["he", "she", "he"], ["they", "they", "they"]
    got = GradientExtractor(base, pmap).pair_gradients(MASKED, fact, alt)
    want = GradientExtractor(base, pmap, per_example="loop").pair_gradients(MASKED, fact, alt)
    for g, w in zip(got, want):
        assert g.dtype == torch.float32 and g.shape == (3, pmap.input_dim)
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


def test_the_alternative_label_on_a_helper_thread_gives_the_same_bits():
    """Production dtype (float32), one forward for both labels: the helper thread's rows are the
    ones the sequential pass computes, bit for bit, and the helper really ran."""
    model, tok = tiny_mlm()
    base = BaseLM(model, tok, "mlm", "tiny", weights_digest(model))
    pmap = select_parameters(base.model)
    pmap = pmap.select(torch.arange(0, pmap.input_dim, 5))
    fact, alt = ["he", "she", "he"], ["they", "they", "they"]
    threaded = GradientExtractor(base, pmap)
    sequential = GradientExtractor(base, pmap, label_threads=False)
    got, want = threaded.pair_gradients(MASKED, fact, alt), sequential.pair_gradients(MASKED, fact, alt)
    assert threaded._pool is not None and sequential._pool is None
    for g, w in zip(got, want):
        assert float(w.abs().max()) > 0 and torch.equal(g, w)
    assert not torch.equal(got[0], got[1])


def test_a_layer_output_changed_in_place_falls_back_to_the_loop():
    """autograd.grad w.r.t. a tensor modified in place afterwards would give the gradient of the new
    value: the batched pass must notice and hand the rows to the per-row loop."""
    base = _base(*tiny_mlm())
    class InPlace(nn.Module):
        def __init__(self, act):
            super().__init__()
            self.act = act

        def forward(self, x):
            return self.act(x.mul_(1.5))  # in place on the dense layer's output

    inter = base.model.bert.encoder.layer[0].intermediate
    inter.intermediate_act_fn = InPlace(inter.intermediate_act_fn)
    pmap = select_parameters(base.model)
    ex, loop = GradientExtractor(base, pmap), GradientExtractor(base, pmap, per_example="loop")
    assert ex.per_example == "hooks"
    fact, alt = ["he", "she", "he"], ["they", "they", "they"]
    got, want = ex.pair_gradients(MASKED, fact, alt), loop.pair_gradients(MASKED, fact, alt)
    assert ex.per_example == "loop"
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
    assert all(p.requires_grad for p in ex.params)
