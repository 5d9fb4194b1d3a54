import itertools

import pytest
import torch

from gradiend_core.errors import ConfigError, DataError, ModelError
from gradiend_core.head import HeadFitConfig, fit_mlm_head, top1_accuracy
from gradiend_core.lm import BaseLM, weights_digest
from gradiend_core.objectives import get_objective
from gradiend_core.testing import tiny_clm, tiny_mlm

MLM = get_objective("mlm")

SUBJECTS = ["the doctor", "the nurse", "my friend", "the teacher", "the student", "the man", "the woman"]
VERBS = ["said that", "thought that", "knew that", "told me that"]
PRONOUNS = ["he", "she", "they", "it"]
ENDINGS = ["was tired .", "went to the park .", "came home late .", "saw the dog .", "made the book ."]
TEXTS = [" ".join(p) for p in itertools.product(SUBJECTS, VERBS, PRONOUNS, ENDINGS)]  # 560 sentences
CFG = HeadFitConfig(steps=150, lr=1e-2)



def _headless_base(seed: int = 0) -> BaseLM:
    model, tok = tiny_mlm(seed=seed)
    return BaseLM(model, tok, "mlm", "tiny", "x", head_fitted=False)


def head_parameters(model):
    return MLM.head_parameters(model)


def _head_state(model) -> dict:
    return {n: p.detach().clone() for n, p in head_parameters(model)}


@pytest.fixture(scope="module")
def fitted():
    base = _headless_base()
    body_before = {k: v.clone() for k, v in base.model.bert.state_dict().items()}
    return base, body_before, base.fit_head(TEXTS, CFG)


def test_fit_improves_heldout_accuracy_and_touches_only_the_head(fitted):
    base, body_before, m = fitted
    assert base.head_fitted is True
    assert base.digest == weights_digest(base.model) != "x"
    assert m["n_heldout_texts"] == 56 and m["n_train_texts"] == 504
    assert m["heldout_accuracy_after"] > m["heldout_accuracy_before"] + 0.1
    assert m["train_loss_curve"][-1] < m["train_loss_curve"][0]
    # head = transform (dense + LayerNorm) + output bias; the tied decoder is the frozen word embedding
    names = sorted(n for n, _ in head_parameters(base.model))
    assert names == sorted(["cls.predictions.bias", "cls.predictions.transform.dense.weight",
                            "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
                            "cls.predictions.transform.LayerNorm.bias"])
    assert m["trainable_parameters"] == sum(p.numel() for _, p in head_parameters(base.model))
    for k, v in base.model.bert.state_dict().items():
        assert torch.equal(v, body_before[k]), k
    assert base.model.cls.predictions.decoder.weight is base.model.bert.embeddings.word_embeddings.weight
    assert all(p.grad is None for p in base.model.parameters())
    assert not base.model.training


def test_fit_is_deterministic_for_a_seed():
    a, b, c = _headless_base(), _headless_base(), _headless_base()
    cfg = HeadFitConfig(steps=40, lr=1e-2)
    torch.manual_seed(123)  # the global RNG must not matter
    ma = a.fit_head(TEXTS, cfg)
    torch.manual_seed(456)
    # the same fit on a bare (model, tokenizer): no BaseLM needed
    mb = fit_mlm_head(b.model, b.tokenizer, TEXTS, cfg, objective=MLM, reset=True)
    ma.pop("seconds"), mb.pop("seconds")
    assert ma == mb
    for (n, pa), (_, pb) in zip(_head_state(a.model).items(), _head_state(b.model).items()):
        assert torch.equal(pa, pb), n
    mc = c.fit_head(TEXTS, HeadFitConfig(steps=40, lr=1e-2, seed=1))
    assert mc["train_loss_curve"] != ma["train_loss_curve"]


def test_top1_accuracy_matches_manual_argmax(fitted):
    base = fitted[0]
    masked = ["the doctor said that [MASK] was tired .", "my friend knew that [MASK] saw the dog ."]
    targets = ["he", "they"]
    tok = base.tokenizer
    hits = 0
    with torch.no_grad():
        for m, t in zip(masked, targets):
            enc = tok(m, return_tensors="pt")
            logits = base.model(**enc).logits[0]
            pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero()[0, 0]
            hits += int(logits[pos].argmax()) == tok.convert_tokens_to_ids(t)
    assert top1_accuracy(base, masked, targets) == hits / 2


def test_head_fit_errors():
    with pytest.raises(ConfigError, match="mask_prob"):
        HeadFitConfig(mask_prob=0.0).validate()
    with pytest.raises(ConfigError, match="steps >= 1"):
        _headless_base().fit_head(TEXTS, HeadFitConfig(steps=0))
    with pytest.raises(DataError, match="at least 2 non-empty texts"):
        _headless_base().fit_head(["only one", "  "], CFG)
    model, tok = tiny_clm()
    clm = BaseLM(model, tok, "clm", "tiny-clm", "x")
    assert not clm.objective.fits_head
    with pytest.raises(ModelError, match="objective 'clm' has no head to fit for 'tiny-clm'"):
        clm.fit_head(TEXTS, CFG)
    with pytest.raises(ModelError, match="cannot find a separable masked-LM head in GPT2LMHeadModel"):
        fit_mlm_head(model, tok, TEXTS, CFG, objective=MLM)
