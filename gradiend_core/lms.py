"""Language-modelling score (LMS) on neutral text: how much a rewrite damages general language modelling.

MLM: mask ~15% of the real tokens of every sentence and report the top-1 accuracy of recovering them.
CLM: the average next-token negative log-likelihood over real tokens; LMS = 1 / (1 + avgNLL).

The expensive, model-independent part (tokenising, choosing mask positions, padding) is done once by
`prepare_lms`; `score_lms` then scores any model on exactly the same inputs, so every cell of a decoder
grid is measured on the same masked positions.

Deviation from the reference: MLM never masks special tokens ([CLS]/[SEP]/...): the reference's
special-token filter compares a tensor to a list and is always true, so it can mask and score them.
Deviation from the reference: CLM scores the logits at position t against the token at t+1 (the
reference compares position t to token t, without the next-token shift).
Deviation from the reference: MLM correctness compares token ids (argmax id == original id), not
lower-cased decoded strings; ignored ids are excluded before positions are drawn (the reference draws
first and skips ignored positions afterwards, so fewer positions get scored).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from gradiend_core.errors import ConfigError, DataError, ModelError
from gradiend_core.gradients import logits_at

OBJECTIVES = ("mlm", "clm")


@dataclass
class PreparedLMS:
    """Tokenised, masked (MLM) and padded batches, reusable across models.

    Each batch is a dict of CPU tensors: input_ids (B, T), attention_mask (B, T) and labels (B, T)
    (-100 where nothing is scored; MLM: the original id at masked positions; CLM: the token id).
    """

    objective: str
    batches: list[dict[str, torch.Tensor]] = field(repr=False)
    n_texts: int
    n_scored: int  # MLM: masked positions; CLM: predicted tokens (after the shift)


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown LM objective {objective!r}; use one of {list(OBJECTIVES)}")


def _clean_texts(texts: Iterable[str], max_texts: int | None) -> list[str]:
    out = [str(t).strip() for t in texts if t is not None and str(t).strip()]
    if max_texts is not None:
        out = out[: int(max_texts)]
    if not out:
        raise DataError("no non-empty neutral texts for the LMS; pass at least one sentence")
    return out


def _pad_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def _collate(seqs: list[list[int]], labels: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad one batch to its longest sequence (dynamic padding)."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), T), dtype=torch.long)
    lab = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, (s, lb) in enumerate(zip(seqs, labels)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, : len(s)] = 1
        lab[i, : len(lb)] = torch.tensor(lb, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def _batched(items: Sequence, batch_size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), batch_size):
        yield items[i : i + batch_size]


def _mask_one(ids: list[int], special: list[int], ignore: set[int], mask_id: int, mask_ratio: float,
              gen: torch.Generator) -> tuple[list[int], list[int]] | None:
    """Mask max(1, int(ratio*n)) of the n eligible (non-special, non-ignored) positions of one sentence."""
    eligible = [i for i, (t, s) in enumerate(zip(ids, special)) if not s and t not in ignore]
    if not eligible:
        return None
    k = max(1, int(mask_ratio * len(eligible)))
    chosen = torch.randperm(len(eligible), generator=gen)[:k].tolist()
    masked, labels = list(ids), [-100] * len(ids)
    for j in chosen:
        pos = eligible[j]
        labels[pos] = ids[pos]
        masked[pos] = mask_id
    return masked, labels


def _prepare_mlm(tokenizer, texts, mask_ratio, seed, batch_size, ignore_ids, max_length) -> PreparedLMS:
    if tokenizer.mask_token_id is None:
        raise ModelError("the tokenizer has no mask token, so a masked-LM LMS is impossible; "
                         "use objective='clm' for a causal model or a tokenizer with a mask token")
    if not 0.0 < mask_ratio <= 1.0:
        raise ConfigError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
    enc = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    all_special = set(tokenizer.all_special_ids)
    gen = torch.Generator().manual_seed(int(seed))  # one generator, sentences in order: reproducible
    rows = []
    for ids, smask in zip(enc["input_ids"], enc["special_tokens_mask"]):
        special = [bool(s) or t in all_special for t, s in zip(ids, smask)]
        out = _mask_one(ids, special, set(ignore_ids), tokenizer.mask_token_id, mask_ratio, gen)
        if out is not None:
            rows.append(out)
    if not rows:
        raise DataError("no neutral text has a maskable (non-special, non-ignored) token; pass real sentences")
    pad = _pad_id(tokenizer)
    batches = [_collate([r[0] for r in b], [r[1] for r in b], pad) for b in _batched(rows, batch_size)]
    n = sum(int((b["labels"] != -100).sum()) for b in batches)
    return PreparedLMS("mlm", batches, len(texts), n)


def _prepare_clm(tokenizer, texts, batch_size, ignore_ids, max_length) -> PreparedLMS:
    enc = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=False)
    ignore = set(ignore_ids)
    rows = []
    for ids in enc["input_ids"]:
        if len(ids) < 2:  # nothing to predict after the shift
            continue
        rows.append((ids, [-100 if t in ignore else t for t in ids]))
    if not rows:
        raise DataError("every neutral text has fewer than 2 tokens; a causal LMS needs longer sentences")
    pad = _pad_id(tokenizer)
    batches = [_collate([r[0] for r in b], [r[1] for r in b], pad) for b in _batched(rows, batch_size)]
    n = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    return PreparedLMS("clm", batches, len(texts), n)


def prepare_lms(tokenizer, texts: Iterable[str], objective: str, mask_ratio: float = 0.15, seed: int = 42,
                batch_size: int = 32, ignore_ids: Iterable[int] = (), max_length: int = 512,
                max_texts: int | None = None) -> PreparedLMS:
    """Tokenise (and for MLM mask) the texts once; the result can be scored on many models."""
    _check_objective(objective)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    texts = _clean_texts(texts, max_texts)
    ignore = tuple(int(i) for i in ignore_ids)
    if objective == "mlm":
        return _prepare_mlm(tokenizer, texts, mask_ratio, seed, batch_size, ignore, max_length)
    return _prepare_clm(tokenizer, texts, batch_size, ignore, max_length)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _score_mlm(model, prepared: PreparedLMS) -> dict:
    dev, correct, total = _device(model), 0, 0
    for b in prepared.batches:
        sel = b["labels"].to(dev) != -100  # (B, T)
        rows, cols = sel.nonzero(as_tuple=True)  # row-major, the order of labels[sel]
        logits = logits_at(model, b["input_ids"].to(dev), b["attention_mask"].to(dev), rows, cols, "mlm")
        pred = logits.argmax(-1)  # (M,) one prediction per masked position
        correct += int((pred == b["labels"].to(dev)[sel]).sum())
        total += int(sel.sum())
    return {"lms": correct / total, "n": total}


@torch.no_grad()
def _score_clm(model, prepared: PreparedLMS) -> dict:
    dev, nll, total = _device(model), 0.0, 0
    for b in prepared.batches:
        logits = model(input_ids=b["input_ids"].to(dev), attention_mask=b["attention_mask"].to(dev)).logits
        logits = logits[:, :-1].float()  # (B, T-1, V): position t predicts token t+1
        target = b["labels"][:, 1:].to(dev)  # (B, T-1)
        nll += float(torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"))
        total += int((target != -100).sum())
    if total == 0:
        raise DataError("no token left to score after ignoring ids; pass longer texts or fewer ignore_ids")
    avg = nll / total
    ok = math.isfinite(avg) and 0.0 <= avg <= 700.0  # exp overflows past ~709
    return {"lms": 1.0 / (1.0 + avg) if ok else 0.0, "avg_nll": avg,
            "perplexity": math.exp(avg) if ok else float("inf"), "n": total}


def score_lms(model, prepared: PreparedLMS) -> dict:
    """Score one model on prepared inputs -> {"lms", "n"} (+ "avg_nll", "perplexity" for CLM)."""
    was_training = model.training
    model.eval()
    try:
        return _score_mlm(model, prepared) if prepared.objective == "mlm" else _score_clm(model, prepared)
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
