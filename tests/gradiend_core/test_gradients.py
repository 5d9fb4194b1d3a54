import pytest
import torch
import torch.nn.functional as F

from gradiend_core.errors import ConfigError, DataError, ModelError
from gradiend_core.gradients import GradientExtractor, assemble
from gradiend_core.lm import BaseLM, weights_digest
from gradiend_core.param_map import select_parameters
from gradiend_core.testing import tiny_clm, tiny_mlm

MASKED = [
    "the doctor said that [MASK] was tired .",
    "[MASK] went to the park",
    "yesterday the nurse told my friend that [MASK] would come again tomorrow .",
]
TARGETS = ["he", "she", "they"]



def _base(kind: str, double: bool = False) -> BaseLM:
    model, tok = tiny_mlm() if kind == "mlm" else tiny_clm()
    if double:  # float64: equality checks then test the math, not float32 summation order
        model = model.double()
    return BaseLM(model, tok, kind, f"tiny-{kind}", weights_digest(model))


@pytest.fixture(scope="module", params=["mlm", "clm"])
def base64(request):
    return _base(request.param, double=True)


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _grad_vec(base, pmap, loss):
    names = pmap.names
    params = dict(base.model.named_parameters())
    grads = torch.autograd.grad(loss, [params[n] for n in names])
    return pmap.gather(dict(zip(names, grads)), dtype=torch.float32)


def test_batch_gradient_is_mean_of_example_gradients(base64):
    ex = GradientExtractor(base64, select_parameters(base64.model))
    batch = ex.batch_gradient(MASKED, TARGETS)
    per = ex.example_gradients(MASKED, TARGETS)
    assert per.shape == (3, ex.param_map.input_dim) and per.dtype == torch.float32 and per.device.type == "cpu"
    assert _rel(batch, per.mean(0)) < 1e-6
    # the rows are genuinely different examples (not the same vector three times)
    assert _rel(per[0], per[1]) > 1e-2


def test_mean_example_gradient_is_the_mean_of_the_rows_gradients(base64):
    """Rows of different lengths and label counts (a 4-subtoken target): each row counts once, by its
    own mean label loss, as pre-pruning's importance needs (not the mean over all labels)."""
    ex = GradientExtractor(base64, select_parameters(base64.model))
    targets = ["he", "zqxv", "they"] if base64.objective.name == "mlm" else TARGETS
    got = ex.mean_example_gradient(MASKED, targets)
    per = ex.example_gradients(MASKED, targets)
    assert got.shape == (ex.param_map.input_dim,) and _rel(got, per.mean(0)) < 1e-6
    if base64.objective.name == "mlm":  # the mean over all six labels weights the long row 4x: a different vector
        assert _rel(ex.batch_gradient(MASKED, targets), per.mean(0)) > 1e-3
    assert all(p.grad is None for p in base64.model.parameters())  # nothing accumulated on the model


@pytest.mark.parametrize("strategy", ["hooks", "loop", "batched"])
def test_padding_matches_unpadded_single_passes(base64, strategy):
    pmap = select_parameters(base64.model)
    ex = GradientExtractor(base64, pmap, per_example=strategy)
    per = ex.example_gradients(MASKED, TARGETS)  # "batched" pads rows to the longest, "loop" never pads
    for i, (m, t) in enumerate(zip(MASKED, TARGETS)):
        single = ex.batch_gradient([m], [t])  # one unpadded row
        assert _rel(per[i], single) < 1e-6


def test_clm_scores_target_from_last_prefix_position():
    base = _base("clm", double=True)
    pmap = select_parameters(base.model)
    ex = GradientExtractor(base, pmap)
    got = ex.example_gradients(MASKED[:1], ["he"])[0]
    tok = base.tokenizer
    ids = tok("the doctor said that", return_tensors="pt")["input_ids"]
    target = tok(" he")["input_ids"][0]
    logits = base.model(ids).logits[0]  # (T, V)
    manual = _grad_vec(base, pmap, F.cross_entropy(logits[-1:], torch.tensor([target])))
    assert _rel(got, manual) < 1e-6
    # the reference's off-by-one (scoring from the second-to-last position) is a different gradient
    logits = base.model(ids).logits[0]
    shifted = _grad_vec(base, pmap, F.cross_entropy(logits[-2:-1], torch.tensor([target])))
    assert _rel(got, shifted) > 1e-2


def test_clm_mask_at_sentence_start_uses_bos():
    base = _base("clm", double=True)
    pmap = select_parameters(base.model)
    got = GradientExtractor(base, pmap).batch_gradient(["[MASK] went home"], ["he"])
    tok = base.tokenizer
    logits = base.model(torch.tensor([[tok.bos_token_id]])).logits[0, -1:]
    manual = _grad_vec(base, pmap, F.cross_entropy(logits, torch.tensor(tok("he")["input_ids"][:1])))
    assert _rel(got, manual) < 1e-6


def test_mlm_multi_subtoken_target_expands_mask():
    base = _base("mlm", double=True)
    tok = base.tokenizer
    pmap = select_parameters(base.model)
    ex = GradientExtractor(base, pmap)
    sub = tok("zqxv", add_special_tokens=False)["input_ids"]
    assert len(sub) == 4
    ids, cols, labels = ex.encode_row("the doctor said that [MASK] was tired", "zqxv")
    assert [ids[c] for c in cols] == [tok.mask_token_id] * 4 and cols == list(range(cols[0], cols[0] + 4))
    assert labels == sub  # i-th mask -> i-th subtoken
    got = ex.batch_gradient(["the doctor said that [MASK] was tired"], ["zqxv"])
    # manual: four [MASK] tokens, HF's own masked-LM loss with labels at those positions
    enc = tok("the doctor said that [MASK] [MASK] [MASK] [MASK] was tired", return_tensors="pt")
    hf_labels = torch.full_like(enc["input_ids"], -100)
    hf_labels[enc["input_ids"] == tok.mask_token_id] = torch.tensor(sub)
    loss = base.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=hf_labels).loss
    assert _rel(got, _grad_vec(base, pmap, loss)) < 1e-6


def test_head_only_logits_match_full_hf_loss(base64):
    pmap = select_parameters(base64.model)
    fast = GradientExtractor(base64, pmap, fast_head=True).batch_gradient(MASKED, TARGETS)
    slow = GradientExtractor(base64, pmap, fast_head=False).batch_gradient(MASKED, TARGETS)
    # the HF model computing its own loss from labels over the full (B, T, V) logits
    ex = GradientExtractor(base64, pmap)
    enc = ex.encode(MASKED, TARGETS)
    ids, att = enc.input_ids, enc.attention_mask
    labels = torch.full_like(ids, -100)
    if base64.objective.name == "mlm":
        labels[enc.rows, enc.cols] = enc.labels
    else:  # append one token so HF's shifted labels score the target from the last prefix position
        ids = torch.cat([ids, torch.full_like(ids[:, :1], ex.pad_id)], 1)
        att = torch.cat([att, torch.zeros_like(att[:, :1])], 1)
        labels = torch.full_like(ids, -100)
        labels[enc.rows, enc.cols + 1] = enc.labels
    loss = base64.model(input_ids=ids, attention_mask=att, labels=labels).loss
    hf = _grad_vec(base64, pmap, loss)
    assert _rel(fast, hf) < 1e-6 and _rel(slow, hf) < 1e-6


def test_only_selected_params_get_gradients():
    base = _base("mlm", double=True)
    full_map = select_parameters(base.model)
    full = GradientExtractor(base, full_map).batch_gradient(MASKED, TARGETS)
    sub_map = select_parameters(base.model, include=["bert.encoder.layer.0.attention.self.query.*"])
    sub = GradientExtractor(base, sub_map).batch_gradient(MASKED, TARGETS)
    sel = {n for n in sub_map.names}
    for name, p in base.model.named_parameters():
        assert p.requires_grad == (name in sel), name
        assert p.grad is None, name  # nothing left behind
    assert sub.shape == (sub_map.input_dim,)
    off = full_map.base_offsets["bert.encoder.layer.0.attention.self.query.weight"]
    assert _rel(sub, full[off:off + sub_map.input_dim]) < 1e-6
    assert not any(p.requires_grad for n, p in base.model.named_parameters() if n.startswith("cls."))
    # a pruned map (index selection) returns exactly the kept entries
    keep = torch.tensor([0, 5, 17, 300, full_map.input_dim - 1])
    pruned = full_map.select(keep)
    got = GradientExtractor(base, pruned).batch_gradient(MASKED, TARGETS)
    assert _rel(got, full[keep]) < 1e-6


def test_pair_gradients_assemble_and_determinism():
    base = _base("mlm")
    ex = GradientExtractor(base, select_parameters(base.model))
    g_f, g_a = ex.pair_gradients(MASKED, TARGETS, ["she", "he", "it"])
    assert torch.equal(g_f, ex.example_gradients(MASKED, TARGETS))  # bitwise deterministic
    assert torch.equal(g_a, ex.example_gradients(MASKED, ["she", "he", "it"]))
    assert torch.equal(assemble("diff", g_f, g_a), g_f - g_a)
    assert assemble("factual", g_f, g_a) is g_f and assemble("alternative", g_f, g_a) is g_a
    with pytest.raises(ConfigError, match="unknown gradient kind 'counterfactual'; use one of"):
        assemble("counterfactual", g_f, g_a)
    with pytest.raises(ConfigError, match="needs the factual and alternative"):
        assemble("diff", g_f, None)


def test_input_errors():
    base = _base("mlm")
    ex = GradientExtractor(base, select_parameters(base.model))
    with pytest.raises(DataError, match=r"has no \[MASK\] placeholder"):
        ex.batch_gradient(["no placeholder here"], ["he"])
    with pytest.raises(DataError, match="2 masked texts but 1 targets"):
        ex.example_gradients(MASKED[:2], ["he"])
    with pytest.raises(ModelError, match="target word '☃' cannot be encoded"):
        ex.example_gradients(MASKED[:1], ["☃"])
    with pytest.raises(ConfigError, match="per-example strategy"):
        GradientExtractor(base, select_parameters(base.model), per_example="vmap")


def test_unfitted_head_is_refused():
    base = _base("mlm")
    base.head_fitted = False
    with pytest.raises(ModelError, match="newly initialised and not fitted"):
        GradientExtractor(base, select_parameters(base.model))


def test_pair_gradients_share_the_forward_exactly():
    """The shared-forward pair path equals two independent per-example extractions."""
    from gradiend_core.gradients import GradientExtractor
    from gradiend_core.lm import BaseLM, weights_digest
    from gradiend_core.param_map import select_parameters
    from gradiend_core.testing import tiny_mlm

    model, tok = tiny_mlm(seed=3)
    base = BaseLM(model, tok, "mlm", "tiny", weights_digest(model))
    ex = GradientExtractor(base, select_parameters(model))
    masked = ["the doctor said [MASK] was late .", "[MASK] went to the park ."]
    fact, alt = ["he", "they"], ["they", "she"]
    g_f, g_a = ex.pair_gradients(masked, fact, alt)
    assert torch.allclose(g_f, ex.example_gradients(masked, fact), rtol=1e-5, atol=1e-7)
    assert torch.allclose(g_a, ex.example_gradients(masked, alt), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(g_f, g_a)
