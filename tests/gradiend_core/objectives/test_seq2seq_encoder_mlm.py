"""seq2seq_encoder_mlm on tiny T5 and BART: resolution, the sentinel / mask inputs, and the gradient, class
probabilities and LMS against direct computations with the transformers model."""
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from gradiend_core.errors import ModelError
from gradiend_core.objectives import get_objective, resolve
from gradiend_core.testing import save_tiny, tiny_bart, tiny_mlm, tiny_t5

ROW = "the doctor said that [MASK] was tired ."


@pytest.fixture(scope="module", params=["t5", "bart"])
def base(request, tmp_path_factory):
    from gradiend_core.lm import load_base_model

    model, tok = (tiny_t5 if request.param == "t5" else tiny_bart)(seed=1)
    return load_base_model(save_tiny(model, tok, tmp_path_factory.mktemp(request.param)))


def test_auto_picks_it_for_t5_and_bart_and_a_bert_is_refused():
    for make in (tiny_t5, tiny_bart):
        assert resolve(make()[0].config).name == "seq2seq_encoder_mlm"
    with pytest.raises(ModelError, match=r"^objective 'seq2seq_encoder_mlm' cannot serve model type 'bert' \(it has "
                                         r"no encoder-decoder \(seq2seq\) LM head\); use objective 'auto' or one that "
                                         r"can: .*mlm"):
        resolve(tiny_mlm()[0].config, "seq2seq_encoder_mlm")
    obj = get_objective("seq2seq_encoder_mlm")
    assert obj.pipeline_task_for(tiny_t5()[0].config) == "text-generation"
    assert obj.pipeline_task_for(tiny_bart()[0].config) == "fill-mask"


def test_sentinel_for_t5_mask_token_for_bart(base):
    obj, tok = base.objective, base.tokenizer
    ids, cols, labels = obj.training_inputs(tok, ROW, "he", 64)
    t5 = base.model.config.model_type == "t5"
    assert tok.convert_ids_to_tokens([ids[c] for c in cols]) == ["<extra_id_0>" if t5 else "<mask>"]
    assert labels == [tok.convert_tokens_to_ids("he")]
    assert ids[-1] == tok.eos_token_id  # the tokenizer's own special tokens
    ids2, pos = obj.scoring_inputs(tok, ROW, 2, 64)
    assert tok.convert_ids_to_tokens([ids2[p] for p in pos]) == (["<extra_id_0>", "<extra_id_1>"] if t5
                                                                  else ["<mask>", "<mask>"])


def test_backbone_is_the_encoder_with_the_shared_embeddings(base):
    from gradiend_core.param_map import select_parameters

    pmap = select_parameters(base.model, backbone=base.objective.backbone(base.model))
    assert pmap.names[0].endswith("shared.weight")
    assert not any("decoder" in n for n in pmap.names) and any("encoder" in n for n in pmap.names)


def _direct_grad(base, pmap, masked, target):
    """d CE(lm_head(encoder(ids))[mask], target) / d theta, straight from the transformers modules."""
    model, tok = base.model, base.tokenizer
    ids, cols, labels = base.objective.training_inputs(tok, masked, target, 64)
    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=True)
    hidden = model.get_encoder()(input_ids=torch.tensor([ids])).last_hidden_state  # (1, T, H)
    F.cross_entropy(model.lm_head(hidden[0, cols]), torch.tensor(labels)).backward()
    out = torch.cat([params[n].grad.reshape(-1) for n in pmap.names])
    model.zero_grad(set_to_none=True)
    return out


def test_one_rows_gradient_equals_a_direct_computation(base):
    from gradiend_core.gradients import GradientExtractor
    from gradiend_core.param_map import select_parameters

    pmap = select_parameters(base.model, backbone=base.objective.backbone(base.model))
    rows = GradientExtractor(base, pmap).example_gradients([ROW, "then [MASK] went to the park ."], ["he", "they"])
    for i, (m, t) in enumerate([(ROW, "he"), ("then [MASK] went to the park .", "they")]):
        want = _direct_grad(base, pmap, m, t)
        assert torch.allclose(rows[i], want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_class_probabilities_are_the_softmax_at_the_sentinel(base):
    from gradiend_core.decoder_eval import prepare_probability_rows, score_probabilities

    tok, model = base.tokenizer, base.model
    rows = pd.DataFrame({"masked": [ROW, "then [MASK] went home ."], "factual_class": ["3SG", "3PL"]})
    classes = {"3SG": ["he", "she"], "3PL": ["they"]}
    got = score_probabilities(model, prepare_probability_rows(tok, base.objective, rows, classes))
    for r, masked in enumerate(rows["masked"]):
        ids, pos = base.objective.scoring_inputs(tok, masked, 1, 64)
        with torch.no_grad():
            logits = model.lm_head(model.get_encoder()(input_ids=torch.tensor([ids])).last_hidden_state[0, pos[0]])
        p = logits.softmax(-1)
        want = [sum(float(p[tok.convert_tokens_to_ids(w)]) for w in ws) for ws in classes.values()]
        assert got[r].tolist() == pytest.approx(want, rel=1e-5)


def test_lms_is_the_teacher_forced_reconstruction_loss(base):
    tok, model, obj = base.tokenizer, base.model, base.objective
    texts = ["the doctor was tired .", "they went to the park today ."]
    prepared = obj.prepare_lms(tok, texts, mask_ratio=0.15, seed=0, batch_size=2, ignore_ids=(), max_length=64)
    values = obj.lms_values(model, prepared)
    nll = []
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tok(t)["input_ids"]])
            nll.append(float(model(input_ids=ids, labels=ids).loss) * ids.shape[1])
    avg = sum(nll) / values.numel()
    assert values.numel() == sum(len(tok(t)["input_ids"]) for t in texts)
    assert obj.lms_summary(values)["avg_nll"] == pytest.approx(avg, rel=1e-5)
    assert obj.score_lms(model, prepared)["lms"] == pytest.approx(1 / (1 + avg), rel=1e-5)
    he = tok.convert_tokens_to_ids("they")
    fewer = obj.prepare_lms(tok, texts, mask_ratio=0.15, seed=0, batch_size=2, ignore_ids=(he,), max_length=64)
    assert fewer.n_scored == prepared.n_scored - 1


def test_a_tokenizer_without_mask_or_sentinel_is_refused():
    from gradiend_core.testing import tiny_clm

    with pytest.raises(ModelError, match="has neither a mask token nor the sentinels <extra_id_0>"):
        get_objective("seq2seq_encoder_mlm").check_tokenizer(tiny_clm()[1], "gpt2-ish")
