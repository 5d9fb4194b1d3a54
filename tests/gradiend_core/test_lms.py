import math

import pytest
import torch
from torch import nn
from types import SimpleNamespace

from gradiend_core.errors import ConfigError, DataError, ModelError
from gradiend_core.lms import lms_clm, lms_mlm, prepare_lms, score_lms
from gradiend_core.testing import tiny_clm, tiny_mlm

TEXTS = [
    "the doctor said that the nurse was late again today .",
    "a man went to the park with his dog in the morning .",
    "we saw the cat near the river",
    "people often go to school by car",
    "the teacher knew the student .",
]


@pytest.fixture(scope="module")
def mlm():
    return tiny_mlm(seed=0)


@pytest.fixture(scope="module")
def clm():
    return tiny_clm(seed=0)


def _masked_positions(prepared):
    """(original ids at masked positions, masked input ids at them, ids at unmasked real positions) per batch."""
    for b in prepared.batches:
        sel = b["labels"] != -100
        yield b, sel


def test_mlm_never_masks_special_tokens_even_at_full_ratio(mlm):
    _, tok = mlm
    special = set(tok.all_special_ids)
    prepared = prepare_lms(tok, TEXTS, "mlm", mask_ratio=1.0)
    n_real = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in TEXTS)
    assert prepared.n_scored == n_real  # every real token, and nothing else, was masked
    for b, sel in _masked_positions(prepared):
        assert not any(int(t) in special for t in b["labels"][sel])
        assert (b["input_ids"][sel] == tok.mask_token_id).all()
        real = b["attention_mask"].bool()
        # [CLS] and [SEP] are still in place, unmasked and unscored.
        assert ((b["input_ids"] == tok.cls_token_id) & real).sum(1).eq(1).all()
        assert ((b["input_ids"] == tok.sep_token_id) & real).sum(1).eq(1).all()


def test_mlm_mask_count_and_determinism(mlm):
    _, tok = mlm
    a = prepare_lms(tok, TEXTS, "mlm", seed=42, batch_size=2)
    b = prepare_lms(tok, TEXTS, "mlm", seed=42, batch_size=2)
    for x, y in zip(a.batches, b.batches):
        assert all(torch.equal(x[k], y[k]) for k in x)
    per_sentence = [int((r != -100).sum()) for bt in a.batches for r in bt["labels"]]
    expected = [max(1, int(0.15 * len(tok(t, add_special_tokens=False)["input_ids"]))) for t in TEXTS]
    assert per_sentence == expected
    c = prepare_lms(tok, TEXTS, "mlm", seed=7, batch_size=2)
    assert any(not torch.equal(x["labels"], z["labels"]) for x, z in zip(a.batches, c.batches))


def test_mlm_ignore_ids_are_never_masked(mlm):
    _, tok = mlm
    the = tok.convert_tokens_to_ids("the")
    prepared = prepare_lms(tok, TEXTS, "mlm", mask_ratio=1.0, ignore_ids=[the])
    for b, sel in _masked_positions(prepared):
        assert the not in b["labels"][sel].tolist()
        assert (b["input_ids"] == the).any()  # still in the input, just not scored


class ConstantMLM(nn.Module):
    """Predicts one fixed token everywhere: accuracy = share of masked tokens equal to it."""

    def __init__(self, vocab, token_id):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.vocab, self.token_id = vocab, token_id

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token_id] = 1.0
        return SimpleNamespace(logits=logits)


def test_mlm_accuracy_matches_hand_count(mlm):
    _, tok = mlm
    the = tok.convert_tokens_to_ids("the")
    words = [w for t in TEXTS for w in tok(t, add_special_tokens=False)["input_ids"]]
    out = lms_mlm(ConstantMLM(len(tok), the), tok, TEXTS, mask_ratio=1.0)
    assert out["n"] == len(words)
    assert out["lms"] == pytest.approx(words.count(the) / len(words))
    assert out["lms"] > 0


def test_mlm_score_matches_unpadded_per_sentence_forward(mlm):
    model, tok = mlm
    prepared = prepare_lms(tok, TEXTS, "mlm", batch_size=3)
    correct = total = 0
    with torch.no_grad():
        for b in prepared.batches:
            for ids, att, lab in zip(b["input_ids"], b["attention_mask"], b["labels"]):
                n = int(att.sum())
                logits = model(input_ids=ids[None, :n]).logits[0]  # no padding at all
                sel = lab[:n] != -100
                correct += int((logits[sel].argmax(-1) == lab[:n][sel]).sum())
                total += int(sel.sum())
    got = score_lms(model, prepared)
    assert got == {"lms": correct / total, "n": total}
    one_batch = score_lms(model, prepare_lms(tok, TEXTS, "mlm", batch_size=64))
    assert one_batch == got  # padding does not change the result


def test_clm_uses_shifted_loss_like_hf(clm):
    model, tok = clm
    text = TEXTS[0]
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        hf = float(model(**enc, labels=enc["input_ids"]).loss)  # HF shifts labels internally
        logits = model(**enc).logits[0]
    out = lms_clm(model, tok, [text])
    assert out["avg_nll"] == pytest.approx(hf, rel=1e-5)
    assert out["lms"] == pytest.approx(1.0 / (1.0 + hf), rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(hf), rel=1e-4)
    assert out["n"] == enc["input_ids"].shape[1] - 1
    unshifted = float(nn.functional.cross_entropy(logits, enc["input_ids"][0]))
    assert abs(unshifted - hf) > 1e-3  # the reference's unshifted variant would be measurably different


def test_clm_batched_with_padding_equals_token_weighted_hf_losses(clm):
    model, tok = clm
    nll = n = 0.0
    with torch.no_grad():
        for t in TEXTS:
            enc = tok(t, return_tensors="pt")
            k = enc["input_ids"].shape[1] - 1
            nll += float(model(**enc, labels=enc["input_ids"]).loss) * k
            n += k
    out = lms_clm(model, tok, TEXTS, batch_size=2)
    assert out["n"] == n
    assert out["avg_nll"] == pytest.approx(nll / n, rel=1e-5)


def test_clm_ignore_ids_drop_those_targets(clm):
    model, tok = clm
    the = tok(" the", add_special_tokens=False)["input_ids"][0]
    full = lms_clm(model, tok, TEXTS)
    less = lms_clm(model, tok, TEXTS, ignore_ids=[the])
    n_the = sum(tok(t, add_special_tokens=False)["input_ids"][1:].count(the) for t in TEXTS)
    assert n_the > 0 and less["n"] == full["n"] - n_the


def test_errors(mlm, clm):
    _, mtok = mlm
    _, ctok = clm
    with pytest.raises(ModelError, match="mask token"):
        prepare_lms(ctok, TEXTS, "mlm")
    with pytest.raises(DataError):
        prepare_lms(mtok, ["", "  "], "mlm")
    with pytest.raises(ConfigError):
        prepare_lms(mtok, TEXTS, "seq2seq")
    with pytest.raises(ConfigError):
        prepare_lms(mtok, TEXTS, "mlm", mask_ratio=0.0)
    with pytest.raises(DataError):
        prepare_lms(ctok, ["the"], "clm")  # one token: nothing to predict after the shift


def test_position_scores_give_the_lms_for_both_families(mlm, clm):
    """lms_values: one score per scored position, whose mean gives the LMS through lms_from_mean."""
    from gradiend_core.lms import lms_values

    model, tok = mlm
    prepared = prepare_lms(tok, TEXTS, "mlm", seed=3)
    acc, logp = lms_values(model, prepared, "accuracy"), lms_values(model, prepared, "log_prob")
    assert acc.shape == logp.shape == (prepared.n_scored,) and set(acc.tolist()) <= {0.0, 1.0}
    assert score_lms(model, prepared)["lms"] == acc.mean().item()
    assert score_lms(model, prepared, "log_prob")["lms"] == pytest.approx(math.exp(logp.mean().item()))
    assert (logp <= 0).all()
    model, tok = clm
    prepared = prepare_lms(tok, TEXTS, "clm")
    logp = lms_values(model, prepared, "log_prob")
    assert torch.equal(logp, lms_values(model, prepared, "accuracy"))  # CLM: log p for either kind
    direct = []
    with torch.no_grad():
        for b in prepared.batches:
            lp = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].log_softmax(-1)
            target = b["labels"][:, 1:]
            sel = target != -100
            direct += lp[sel].gather(1, target[sel][:, None])[:, 0].tolist()
    assert logp.tolist() == pytest.approx(direct, abs=1e-6)
    avg = -sum(direct) / len(direct)
    assert score_lms(model, prepared)["lms"] == pytest.approx(1 / (1 + avg), rel=1e-6)
    assert score_lms(model, prepared, "log_prob")["lms"] == pytest.approx(math.exp(-avg), rel=1e-6)
    with pytest.raises(ConfigError, match="LMS kind"):
        score_lms(model, prepared, "perplexity")
