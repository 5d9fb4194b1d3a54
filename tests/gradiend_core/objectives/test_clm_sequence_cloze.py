"""clm_sequence_cloze on the tiny GPT-2: the filled sentence's labels (word + continuation, aligned with the
causal shift) match a direct HF loss, and the decoder grid's class probabilities match a direct
computation from the model's logits (log P(word + continuation), softmax across candidates, summed per
class)."""
import pandas as pd
import pytest
import torch

from gradiend_core.decoder_eval import prepare_probability_rows, score_probabilities
from gradiend_core.errors import DataError, ModelError
from gradiend_core.gradients import GradientExtractor
from gradiend_core.lm import BaseLM, weights_digest
from gradiend_core.objectives import get_objective, resolve
from gradiend_core.objectives.clm_sequence_cloze import CausalSequenceCloze
from gradiend_core.param_map import select_parameters
from gradiend_core.testing import tiny_clm

CLOZE = get_objective("clm_sequence_cloze")
MASKED = "the doctor said [MASK] was late ."
CLASS_WORDS = {"3SG": ["he", "she"], "3PL": ["they"]}


@pytest.fixture(scope="module")
def tiny():
    return tiny_clm(seed=1, words=["doctor", "said", "was", "were", "late", "sat", "down", "they", "she"])


def test_auto_never_picks_it_but_it_serves_a_decoder_by_name(tiny):
    model, _ = tiny
    assert resolve(model.config).name == "clm"
    assert resolve(model.config, "clm_sequence_cloze") is CLOZE
    assert CLOZE.pipeline_task == "text-generation" and CLOZE.scores_sequences


def test_a_tokenizer_without_offsets_is_refused(tiny):
    from types import SimpleNamespace

    CLOZE.check_tokenizer(tiny[1])
    slow = SimpleNamespace(is_fast=False, name_or_path="slow-tok")  # a pure-Python tokenizer has no offsets
    with pytest.raises(ModelError, match="^objective 'clm_sequence_cloze' needs a fast tokenizer .* for slow-tok;"):
        CLOZE.check_tokenizer(slow)


def test_labels_are_the_word_and_its_continuation_aligned(tiny):
    _, tok = tiny
    ids, cols, labels = CLOZE.training_inputs(tok, MASKED, "he", 512)
    full = tok("the doctor said he was late .")["input_ids"]
    word_at = len(tok("the doctor said")["input_ids"])
    assert ids == full
    assert labels == full[word_at:] and tok.decode(labels) == " he was late ."
    assert cols == list(range(word_at - 1, len(full) - 1))  # each token predicted from the position before it


def test_window_and_start_token_and_length_cut(tiny):
    _, tok = tiny
    short = CausalSequenceCloze()
    short.rhs_window = 1
    ids, _, labels = short.training_inputs(tok, MASKED, "he", 512)
    assert tok.decode(labels) == " he was" and tok.decode(ids) == "the doctor said he was"  # tail dropped
    ids, cols, labels = CLOZE.training_inputs(tok, "[MASK] sat down", "they", 512)
    assert ids[0] == tok.bos_token_id and tok.decode(labels) == "they sat down" and cols[0] == 0
    ids, cols, labels = CLOZE.training_inputs(tok, "the doctor said [MASK] was late .", "he", 3)
    # too long: the continuation goes first, then the prefix from the left
    assert tok.decode(ids) == " doctor said he" and tok.decode(labels) == " he" and cols == [1]
    with pytest.raises(DataError, match="do not fit in 1 tokens"):
        CLOZE.training_inputs(tok, MASKED, "he", 1)


def test_training_gradient_equals_the_hf_causal_loss_of_the_filled_sentence(tiny):
    model, tok = tiny
    pmap = select_parameters(model, include=["transformer.h.1.mlp.c_fc.weight", "transformer.ln_f.*"])
    base = BaseLM(model, tok, "clm_sequence_cloze", "tiny", weights_digest(model))
    got = GradientExtractor(base, pmap, per_example="loop").batch_gradient([MASKED], ["she"])

    enc = tok("the doctor said she was late .", return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[:, :len(tok("the doctor said")["input_ids"])] = -100  # HF shifts: token t from logits t-1
    model.zero_grad()
    model(**enc, labels=labels).loss.backward()
    want = pmap.gather_grads(model)
    model.zero_grad()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def _direct_class_probs(model, tok, masked: str, candidates: dict[str, list[str]]) -> torch.Tensor:
    """log P(word + continuation | prefix) per candidate from the full logits, softmax, summed per class."""
    prefix_len = len(tok(masked.split("[MASK]")[0].rstrip())["input_ids"])
    scores, owner = [], []
    for ci, forms in enumerate(candidates.values()):
        for form in forms:
            ids = torch.tensor([tok(masked.replace("[MASK]", form))["input_ids"]])
            with torch.no_grad():
                logp = model(input_ids=ids).logits[0].double().log_softmax(-1)  # (T, V)
            scores.append(sum(logp[t - 1, ids[0, t]] for t in range(prefix_len, ids.shape[1])))
            owner.append(ci)
    p = torch.stack(scores).softmax(0)
    return torch.zeros(len(candidates), dtype=torch.float64).index_add_(0, torch.tensor(owner), p)


def test_class_probabilities_equal_a_direct_computation(tiny):
    model, tok = tiny
    rows = pd.DataFrame({"masked": [MASKED, "so the doctor said [MASK] were late ."],
                         "factual_class": ["3SG", "3PL"]})
    prepared = prepare_probability_rows(tok, CLOZE, rows, CLASS_WORDS, batch_size=5)
    got = score_probabilities(model, prepared)  # (2, 2)
    assert prepared.candidates["3SG"][:2] == ["he", "she"] and "they" in prepared.candidates["3PL"]
    for i, masked in enumerate(rows["masked"]):
        torch.testing.assert_close(got[i], _direct_class_probs(model, tok, masked, prepared.candidates),
                                   rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(1), torch.ones(2, dtype=torch.float64))
    # the right context matters: the same prefix with "was" or "were" after it scores differently
    assert not torch.allclose(got[0], got[1])
