"""A causal LM whose tokenizer adds a BOS token (Llama, OPT) is fed the same ids for the same text in
extraction (training inputs), the decoder grid (scoring inputs) and the LMS."""
import pandas as pd
import pytest

from gradiend_core.decoder_eval import prepare_probability_rows
from gradiend_core.gradients import GradientExtractor
from gradiend_core.lm import BaseLM, weights_digest
from gradiend_core.lms import prepare_lms
from gradiend_core.objectives import get_objective
from gradiend_core.param_map import select_parameters
from gradiend_core.testing import tiny_clm

CLM = get_objective("clm")
MASKED = "the doctor said that [MASK] was tired ."
TEXT = "the doctor said that he was tired ."
PREFIX = "the doctor said that"


def _bos_clm():
    """The tiny GPT-2 with a tokenizer whose post-processor puts BOS in front of every text."""
    from tokenizers import processors

    model, tok = tiny_clm()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, tok.bos_token_id)])
    return model, tok


@pytest.fixture(scope="module")
def bos():
    return _bos_clm()


def _extraction_ids(model, tok) -> list[int]:
    base = BaseLM(model, tok, "clm", "tiny", weights_digest(model))
    ex = GradientExtractor(base, select_parameters(model, include=["transformer.ln_f.*"]))
    enc = ex.encode([MASKED], ["he"])
    return enc.input_ids[0].tolist()


def _grid_ids(tok) -> list[int]:
    rows = pd.DataFrame({"masked": [MASKED], "factual_class": ["3SG"]})
    prepared = prepare_probability_rows(tok, "clm", rows, {"3SG": ["he"], "3PL": ["they"]})
    (group,) = prepared.groups
    (batch,) = group.batches
    return batch["input_ids"][0].tolist()


def _lms_ids(tok) -> list[int]:
    (batch,) = prepare_lms(tok, [TEXT], "clm").batches
    return batch["input_ids"][0].tolist()


def test_bos_tokenizer_is_encoded_alike_in_extraction_grid_and_lms(bos):
    model, tok = bos
    plain = tok(PREFIX, add_special_tokens=False)["input_ids"]
    want = [tok.bos_token_id] + plain
    assert _extraction_ids(model, tok) == want
    assert _grid_ids(tok) == want
    assert _lms_ids(tok)[:len(want)] == want  # the LMS text starts with the same ids


def test_gpt2_style_tokenizer_ids_are_unchanged():
    model, tok = tiny_clm()  # adds no special tokens
    plain = tok(PREFIX, add_special_tokens=False)["input_ids"]
    assert _extraction_ids(model, tok) == _grid_ids(tok) == plain
    assert _lms_ids(tok) == tok(TEXT, add_special_tokens=False)["input_ids"]


def test_a_long_prefix_keeps_its_bos_when_cut(bos):
    _, tok = bos
    plain = tok(PREFIX, add_special_tokens=False)["input_ids"]
    ids, cols, labels = CLM.training_inputs(tok, MASKED, "he", max_length=3)
    assert ids == [tok.bos_token_id] + plain[-2:] and cols == [2]
    assert labels == CLM.target_token_ids(tok, "he")[:1]
    assert CLM.scoring_inputs(tok, MASKED, 1, max_length=3) == (ids, cols)


def test_empty_prefix_is_the_bos_token(bos):
    _, tok = bos
    ids, cols, _ = CLM.training_inputs(tok, "[MASK] went home .", "she", max_length=16)
    assert ids == [tok.bos_token_id] and cols == [0]
    assert CLM.scoring_inputs(tok, "[MASK] went home .", 1, max_length=16) == (ids, cols)
