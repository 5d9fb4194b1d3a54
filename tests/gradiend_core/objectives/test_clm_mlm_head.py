"""clm_mlm_head on a tiny GPT-2: resolution, the masked inputs, the head fit and its save/load round trip,
and the gradient and class probabilities against direct computations with the head and the decoder."""
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from gradiend_core.errors import ModelError
from gradiend_core.objectives import resolve
from gradiend_core.testing import save_tiny, tiny_clm, tiny_t5

ROW = "the doctor said that [MASK] was tired ."
CLASSES = {"3SG": ["he", "she"], "3PL": ["they"]}
TEXTS = [f"{a} the {n} said that {w} was {s} ." for a in ("then", "and") for n in ("doctor", "nurse", "teacher")
         for w in ("he", "she", "they", "He") for s in ("tired", "happy")]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from gradiend_core.head import HeadFitConfig
    from gradiend_core.lm import load_base_model

    d = tmp_path_factory.mktemp("gpt2")
    save_tiny(*tiny_clm(seed=2), d / "raw")
    fresh = load_base_model(d / "raw", allow_missing_head=True, objective="clm_mlm_head")
    assert fresh.head_fitted is False
    metrics = fresh.fit_head(TEXTS, HeadFitConfig(steps=60, batch_size=8, lr=1e-2), classes=CLASSES)
    assert metrics["words"] == ["he", "she", "they"] and metrics["n_train_rows"] + metrics["n_heldout_rows"] == 48
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    save_tiny(fresh.model, fresh.tokenizer, d / "fitted")
    loaded = load_base_model(d / "fitted", objective="clm_mlm_head")
    assert loaded.digest == fresh.digest and loaded.head_fitted is None  # the head round-trips exactly
    return loaded


def test_served_only_on_request_and_only_for_decoders():
    gpt2 = tiny_clm()[0].config
    assert resolve(gpt2).name == "clm" and resolve(gpt2, "clm_mlm_head").name == "clm_mlm_head"
    with pytest.raises(ModelError, match=r"^objective 'clm_mlm_head' cannot serve model type 't5' \(it is not a "
                                         r"decoder-only causal LM\); use objective 'auto' or one that can: "
                                         r"seq2seq_encoder_mlm$"):
        resolve(tiny_t5()[0].config, "clm_mlm_head")


def test_a_raw_decoder_without_head_fitting_is_refused(tmp_path):
    from gradiend_core.lm import load_base_model

    save_tiny(*tiny_clm(), tmp_path)
    with pytest.raises(ModelError, match="has no auxiliary masked-word head; enable head fitting"):
        load_base_model(tmp_path, objective="clm_mlm_head")


def test_the_mask_is_eos_in_the_full_sentence(base):
    tok = base.tokenizer
    ids, cols, labels = base.objective.training_inputs(tok, ROW, "he", 64)
    assert ids[cols[0]] == tok.eos_token_id and tok.decode(ids[cols[0] + 1:]) == " was tired ."
    assert tok.decode(ids[:cols[0]]) == "the doctor said that" and labels == tok(" he")["input_ids"]


def _direct(base, masked, target):
    """(head logits over the words (C,), CE gradient w.r.t. the decoder) from the modules themselves."""
    model, tok = base.model, base.tokenizer
    ids, cols, _ = base.objective.training_inputs(tok, masked, target, 64)
    spec = model.config.gradiend_aux_mlm_head
    model.zero_grad(set_to_none=True)
    hidden = model.transformer(input_ids=torch.tensor([ids])).last_hidden_state[0]  # (T, H)
    logits = model.mlm_aux_head(hidden[cols[0]:cols[0] + 3].mean(0))                # (C,)
    F.cross_entropy(logits[None], torch.tensor([spec["words"].index(target)])).backward()
    return logits.detach(), model


def test_one_rows_gradient_is_the_heads_loss_gradient(base):
    from gradiend_core.gradients import GradientExtractor
    from gradiend_core.param_map import select_parameters

    pmap = select_parameters(base.model, backbone=base.objective.backbone(base.model))
    assert not any("aux" in n or "lm_head" in n for n in pmap.names)
    rows = GradientExtractor(base, pmap).example_gradients([ROW, "and [MASK] went home ."], ["she", "they"])
    for i, (m, t) in enumerate([(ROW, "she"), ("and [MASK] went home .", "they")]):
        _, model = _direct(base, m, t)
        params = dict(model.named_parameters())
        want = torch.cat([params[n].grad.reshape(-1) for n in pmap.names])
        model.zero_grad(set_to_none=True)
        assert torch.allclose(rows[i], want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_class_probabilities_are_the_heads_softmax(base):
    from gradiend_core.decoder_eval import prepare_probability_rows, score_probabilities

    rows = pd.DataFrame({"masked": [ROW, "and [MASK] went home ."], "factual_class": ["3SG", "3PL"]})
    got = score_probabilities(base.model, prepare_probability_rows(base.tokenizer, base.objective, rows, CLASSES))
    for r, masked in enumerate(rows["masked"]):
        p = _direct(base, masked, "he")[0].softmax(-1)
        base.model.zero_grad(set_to_none=True)
        assert got[r].tolist() == pytest.approx([float(p[0] + p[1]), float(p[2])], rel=1e-5)
