"""Language-modelling score (LMS) on neutral text: how much a rewrite damages general language modelling.

What is scored is the base model's prediction objective's (gradiend_core/objectives/): MLM masks ~15%
of the real tokens of every sentence and reports the top-1 accuracy of recovering them; CLM reports
1 / (1 + average next-token NLL) over real tokens. Texts are encoded the same way as for extraction and
the decoder grid (`Objective.tokenize`).

The expensive, model-independent part (tokenising, choosing mask positions, padding) is done once by
`prepare_lms`; `score_lms` then scores any model on exactly the same inputs, so every cell of a decoder
grid is measured on the same masked positions. `lms_values` gives the score of every position (the LMS
is a function of their mean, `Objective.lms_from_mean`), so two models can be compared position by
position. kind: "accuracy" (the reference's LMS of the family) or "log_prob" (the log-probability of the
scored tokens; LMS = exp of their mean).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable

from gradiend_core.errors import ConfigError, DataError
from gradiend_core.objectives import get_objective
from gradiend_core.objectives.base import LMS_KINDS, Objective, PreparedLMS

__all__ = ["PreparedLMS", "prepare_lms", "score_lms", "lms_values", "lms_mlm", "lms_clm", "LMS_KINDS"]


def _clean_texts(texts: Iterable[str], max_texts: int | None) -> list[str]:
    out = [str(t).strip() for t in texts if t is not None and str(t).strip()]
    if max_texts is not None:
        out = out[: int(max_texts)]
    if not out:
        raise DataError("no non-empty neutral texts for the LMS; pass at least one sentence")
    return out


def prepare_lms(tokenizer, texts: Iterable[str], objective: str | Objective, mask_ratio: float = 0.15,
                seed: int = 42, batch_size: int = 32, ignore_ids: Iterable[int] = (), max_length: int = 512,
                max_texts: int | None = None) -> PreparedLMS:
    """Tokenise (and for MLM mask) the texts once; the result can be scored on many models.
    objective: a registered name ("mlm", "clm", ...) or an Objective."""
    obj = get_objective(objective)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    texts = _clean_texts(texts, max_texts)
    ignore = tuple(int(i) for i in ignore_ids)
    return obj.prepare_lms(tokenizer, texts, mask_ratio=mask_ratio, seed=seed, batch_size=batch_size,
                           ignore_ids=ignore, max_length=max_length)


def score_lms(model, prepared: PreparedLMS, kind: str = "accuracy") -> dict:
    """Score one model on prepared inputs -> {"lms", "n"} (+ "avg_nll", "perplexity" for CLM)."""
    with _eval(model):
        return prepared.objective.score_lms(model, _check_kind(prepared, kind), kind)


def lms_values(model, prepared: PreparedLMS, kind: str = "accuracy"):
    """The score of every prepared position -> Tensor (n,) float64 (same order for every model)."""
    with _eval(model):
        return prepared.objective.lms_values(model, _check_kind(prepared, kind), kind)


def _check_kind(prepared: PreparedLMS, kind: str) -> PreparedLMS:
    if kind not in LMS_KINDS:
        raise ConfigError(f"unknown LMS kind {kind!r}; use one of {list(LMS_KINDS)}")
    return prepared


@contextlib.contextmanager
def _eval(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def lms_mlm(model, tokenizer, texts: Iterable[str], mask_ratio: float = 0.15, seed: int = 42,
            batch_size: int = 32, ignore_ids: Iterable[int] = (), max_length: int = 512) -> dict:
    """Masked-LM top-1 accuracy on ~15% of the real tokens -> {"lms": acc, "n": masked count}."""
    prepared = prepare_lms(tokenizer, texts, "mlm", mask_ratio=mask_ratio, seed=seed,
                           batch_size=batch_size, ignore_ids=ignore_ids, max_length=max_length)
    return score_lms(model, prepared)


def lms_clm(model, tokenizer, texts: Iterable[str], batch_size: int = 32, ignore_ids: Iterable[int] = (),
            max_length: int = 512) -> dict:
    """Causal-LM shifted next-token NLL -> {"lms": 1/(1+avgNLL), "avg_nll", "perplexity", "n"}."""
    prepared = prepare_lms(tokenizer, texts, "clm", batch_size=batch_size, ignore_ids=ignore_ids,
                           max_length=max_length)
    return score_lms(model, prepared)
