"""clm_sequence_cloze: a decoder-only causal LM scored on the sentence with the target word in place.

The [MASK] is filled with the word and the model predicts the word's tokens and the continuation after
it, each token from the logits one position earlier (the causal shift, aligned), so the right context
("[MASK] were late" against "[MASK] was late") bears on the gradient and on the class probabilities;
`clm` sees only the prefix. `auto` never picks this family: request it as `model.objective:
clm_sequence_cloze` (any model `clm` serves).

A row filled with word w (extraction and decoder grid alike, `sequence_row`): every [MASK] replaced by w,
the sentence encoded once with the tokenizer's own special tokens (`tokenize`); labelled: w's tokens and
the first RHS_WINDOW tokens after them (-1: the whole continuation, the reference's default; 0: w only).
Tokens after the last labelled one are dropped (a causal model's log-probabilities before them do not
depend on them); a row still over max_length loses continuation tokens first, then prefix tokens from the
left (leading special tokens kept). A word that starts the sentence is predicted after the BOS token
(EOS when there is none), inserted where the tokenizer adds none, and in its sentence-initial form.
  training: the loss of a row is the mean cross-entropy over its labelled tokens (the HF causal-LM loss
    of the filled sentence with labels -100 elsewhere);
  decoder grid: for every row and candidate c (a class word or one of its one-token case variants),
    log P(c + window | prefix) = the sum of the labelled tokens' log-probabilities; a softmax across the
    row's candidates gives P(c); P(class) = the sum over its candidates (so the classes' P sum to 1);
  LMS: as `clm` (next-token log-probabilities of neutral text).
"""
from __future__ import annotations

from gradiend_core.errors import DataError, ModelError
from gradiend_core.objectives import get_objective, register
from gradiend_core.objectives.base import Row, model_name
from gradiend_core.objectives.clm import CausalLM
from gradiend_core.tokens import MASK, split_at_mask

RHS_WINDOW = -1  # continuation tokens labelled after the word (-1: all; the reference's default)


@register
class CausalSequenceCloze(CausalLM):
    name = "clm_sequence_cloze"
    scores_sequences = True
    rhs_window = RHS_WINDOW

    def auto_score(self, config) -> int:
        return 0  # never `auto`: clm is the decoder-only default

    def cannot_serve(self, config) -> str | None:
        """Decoder-only models only (clm's score 3): a model that merely has a causal-LM class (a BERT
        masked LM) attends both ways, so every filled token would see the tokens it predicts."""
        if get_objective("clm").auto_score(config) >= 3:
            return None
        return (f"model type '{getattr(config, 'model_type', '?')}' (it is not a decoder-only causal LM, so "
                "the filled sentence's tokens would see the words they predict)")

    def check_tokenizer(self, tokenizer, name: str | None = None) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(f"objective '{self.name}' needs a fast tokenizer (character offsets) for "
                             f"{name or model_name(tokenizer)}; save the model's tokenizer.json with it")

    def scored_pieces(self, ids: list[int]) -> list[int]:
        return ids  # every piece of a word is predicted in place

    def training_inputs(self, tokenizer, masked: str, target: str, max_length: int) -> Row:
        """(filled sentence ids, the positions whose logits predict each labelled token, those tokens)."""
        return self.sequence_row(tokenizer, masked, target, max_length)

    def scoring_inputs(self, tokenizer, masked: str, k: int, max_length: int) -> tuple[list[int], list[int]]:
        raise ModelError(f"objective '{self.name}' scores whole filled sentences (sequence_row), not positions")

    def sequence_row(self, tokenizer, masked: str, word: str, max_length: int) -> Row:
        """(ids, label positions, label ids) of `masked` filled with `word` (module docstring)."""
        prefix, form = split_at_mask(masked)[0], word.strip()
        if not form:
            raise DataError(f"empty target word for masked text {masked[:60]!r}; give every row a word")
        enc = self.tokenize(tokenizer, [masked.replace(MASK, form)], offsets=True)
        ids, special = list(enc["input_ids"][0]), list(enc["special_tokens_mask"][0])
        t0, t1 = _word_span(list(enc["offset_mapping"][0]), special, len(prefix), len(prefix) + len(form),
                            word, tokenizer)
        if t0 == 0:  # nothing before the word: predict it from the start token
            ids, special, t0, t1 = self._with_start(tokenizer, masked, ids, special, t0, t1)
        end = _window_end(special, t1, self.rhs_window)
        ids, special, t0 = _fit(ids[:end], special[:end], t0, t1, max_length, masked)
        labelled = [j for j in range(t0, len(ids)) if not special[j]]
        return ids, [j - 1 for j in labelled], [ids[j] for j in labelled]

    def _with_start(self, tokenizer, masked, ids, special, t0, t1):
        """Put the BOS token (EOS when there is none) in front of a word that starts the sentence."""
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise DataError(f"masked text {masked[:60]!r} has no words before {MASK} and the tokenizer has no "
                            "BOS token; a causal LM needs a token to predict the word from (drop such rows)")
        return [int(start)] + ids, [1] + special, t0 + 1, t1 + 1


def _word_span(spans, special, start: int, end: int, word: str, tokenizer) -> tuple[int, int]:
    """[t0, t1): the tokens of the characters [start, end) (the filled word)."""
    real = [j for j, s in enumerate(special) if not s]
    t0 = next((j for j in real if spans[j][1] > start), None)
    if t0 is None or spans[t0][0] >= end:
        raise ModelError(f"target word '{word}' is lost when encoding its sentence with the tokenizer of "
                         f"{getattr(tokenizer, 'name_or_path', '?')}; check the masked text and the word")
    t1 = next((j for j in real if j > t0 and spans[j][0] >= end), len(special))
    return t0, t1


def _window_end(special, t1: int, window: int) -> int:
    """End (exclusive) of the labelled tokens: the word [.., t1) and `window` real tokens after it (-1: all)."""
    rest = [j for j in range(t1, len(special)) if not special[j]]
    n = len(rest) if window < 0 else min(window, len(rest))
    return rest[n - 1] + 1 if n else t1


def _fit(ids: list[int], special: list[int], t0: int, t1: int, max_length: int, masked: str):
    """Cut a row to max_length: continuation tokens first, then prefix tokens from the left (leading
    special tokens kept) -> (ids, special, t0)."""
    if len(ids) > max_length:
        keep = max(t1, max_length)
        ids, special = ids[:keep], special[:keep]
    over = len(ids) - max_length
    if over <= 0:
        return ids, special, t0
    lead = 0
    while lead < len(special) and special[lead]:
        lead += 1
    lead = lead if lead < max_length else 0
    if t0 - over < max(lead, 1):
        raise DataError(f"the target word of {masked[:60]!r} and one token before it do not fit in "
                        f"{max_length} tokens; shorten the text or use a model with longer inputs")
    return ids[:lead] + ids[lead + over:], special[:lead] + special[lead + over:], t0 - over
