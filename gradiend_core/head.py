"""Fit a masked-LM head onto an encoder-only checkpoint (e.g. a sentence-transformers BertModel).

Only the head is trained: for BERT the transform (dense + LayerNorm) and the output bias; the output
decoder is tied to the word embeddings and stays frozen with the rest of the encoder. Because the
encoder is frozen, each training sentence is masked once (fixed for the seed) and its hidden states at
the masked positions are computed once and cached; the training steps then only run the head on those
cached (M, H) states. Masked tokens are always replaced by the mask token (no 80/10/10 mix), which is
the only form GRADIEND ever feeds the model.

Reached through the objective (`MaskedLM.fit_head`, `BaseLM.fit_head`); it works on a bare (model,
tokenizer) and asks the given objective for the backbone, the head and the text encoding, so it needs
neither BaseLM nor the digest (the caller refreshes that).
"""
from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from gradiend_core.errors import ConfigError, DataError, ModelError
from gradiend_core.objectives.base import collate, mask_token_or_error


@dataclass
class HeadFitConfig:
    steps: int = 1000
    lr: float = 5e-3
    batch_size: int = 32          # sentences per step
    mask_prob: float = 0.15       # per non-special token; at least one mask per sentence
    seed: int = 0
    heldout_fraction: float = 0.1
    max_length: int = 64
    weight_decay: float = 0.01
    encode_batch_size: int = 64   # sentences per frozen-encoder forward when caching
    max_texts: int = 6000         # corpus texts used (the first ones), held-out share included

    def validate(self) -> "HeadFitConfig":
        if self.steps < 1 or self.batch_size < 1 or self.max_length < 4 or self.max_texts < 2:
            raise ConfigError("head fitting needs steps >= 1, batch_size >= 1, max_length >= 4 and max_texts >= 2; "
                              "fix the head settings")
        if not 0 < self.mask_prob <= 1 or not 0 <= self.heldout_fraction < 1 or self.lr <= 0:
            raise ConfigError("head fitting needs 0 < mask_prob <= 1, 0 <= heldout_fraction < 1 and lr > 0; fix "
                              "the head settings")
        return self


def _mask_sentence(objective, tokenizer, text: str, rng: random.Random, cfg: HeadFitConfig):
    """Mask random non-special tokens of one sentence: (ids, positions, original ids) or None if too short."""
    ids = list(objective.tokenize(tokenizer, [text], cfg.max_length)["input_ids"][0])
    special = set(tokenizer.all_special_ids)
    cand = [i for i, t in enumerate(ids) if t not in special]
    if not cand:
        return None
    pos = [i for i in cand if rng.random() < cfg.mask_prob] or [rng.choice(cand)]
    labels = [ids[i] for i in pos]
    mask_id = mask_token_or_error(tokenizer)
    for i in pos:
        ids[i] = mask_id
    return ids, pos, labels


@torch.no_grad()
def _cache_hidden(body, tokenizer, rows, cfg: HeadFitConfig):
    """Frozen-encoder hidden states at the masked positions: (M, H) states, (M,) labels, (M,) sentence ids."""
    pad = tokenizer.pad_token_id or 0
    device = next(body.parameters()).device
    hs, ys, sid = [], [], []
    for s in range(0, len(rows), cfg.encode_batch_size):
        enc = collate(rows[s:s + cfg.encode_batch_size], pad)
        out = body(input_ids=enc.input_ids.to(device),
                   attention_mask=enc.attention_mask.to(device)).last_hidden_state  # (b, T, H)
        hs.append(out[enc.rows.to(device), enc.cols.to(device)].float().cpu())
        ys.append(enc.labels)
        sid.append(enc.rows + s)
    return torch.cat(hs), torch.cat(ys), torch.cat(sid)


@torch.no_grad()
def _accuracy(head, hidden: torch.Tensor, labels: torch.Tensor, chunk: int = 512) -> float:
    """Top-1 accuracy (argmax over the vocabulary) of the head on cached hidden states."""
    if len(labels) == 0:
        return float("nan")
    hits = sum(int((head(hidden[i:i + chunk]).argmax(-1) == labels[i:i + chunk]).sum())
               for i in range(0, len(labels), chunk))
    return hits / len(labels)


def _split(texts: Sequence[str], cfg: HeadFitConfig) -> tuple[list[str], list[str]]:
    order = list(range(len(texts)))
    random.Random(cfg.seed).shuffle(order)
    n_held = int(round(cfg.heldout_fraction * len(texts))) if len(texts) > 1 else 0
    n_held = min(max(n_held, 1 if cfg.heldout_fraction > 0 and len(texts) > 1 else 0), len(texts) - 1)
    return [texts[i] for i in order[n_held:]], [texts[i] for i in order[:n_held]]


def _prepare(objective, model, tokenizer, texts: Sequence[str], cfg: HeadFitConfig, salt: int):
    rng = random.Random(cfg.seed * 1_000_003 + salt)
    rows = [r for r in (_mask_sentence(objective, tokenizer, t, rng, cfg) for t in texts) if r is not None]
    return _cache_hidden(objective.backbone(model), tokenizer, rows, cfg) if rows else None


def _curve(losses: list[float], points: int = 10) -> list[float]:
    """Mean training loss over `points` equal chunks of the run."""
    size = max(1, math.ceil(len(losses) / points))
    return [round(sum(c) / len(c), 5) for c in (losses[i:i + size] for i in range(0, len(losses), size))]


def _head_and_params(objective, model):
    """(head function, its trainable parameters); ModelError when the model has no separable head."""
    head = objective.head_fn(model)
    params = [p for _, p in objective.head_parameters(model)]
    if head is None or not params:
        raise ModelError(f"cannot find a separable masked-LM head in {type(model).__name__}; use a BERT/RoBERTa-"
                         "style masked LM")
    return head, params


def _train(model, head, params: list, train: tuple, n_sent: int, cfg: HeadFitConfig) -> list[float]:
    """AdamW on the head only, over cached (M, H) states; sentences drawn in seeded epochs -> losses."""
    h_tr, y_tr, s_tr = train
    trainable = {id(p) for p in params}
    saved = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    perm, cursor, losses = torch.randperm(n_sent, generator=g), 0, []
    show = sys.stderr.isatty()
    from tqdm.auto import tqdm

    try:
        for _ in tqdm(range(cfg.steps), desc="fitting MLM head", disable=not show):
            if cursor + cfg.batch_size > n_sent:  # new epoch: reshuffle sentences
                perm, cursor = torch.randperm(n_sent, generator=g), 0
            chosen = perm[cursor:cursor + cfg.batch_size]
            cursor += cfg.batch_size
            pick = torch.isin(s_tr, chosen)                                  # (M,) positions of the batch
            loss = F.cross_entropy(head(h_tr[pick]), y_tr[pick])             # logits only at masked positions
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        for p in model.parameters():
            p.requires_grad_(saved[id(p)])
            p.grad = None
    return losses


def fit_mlm_head(model, tokenizer, texts: Sequence[str], cfg: HeadFitConfig | None = None, *, objective,
                 reset: bool = False) -> dict:
    """Train the masked-LM head of `model` on `texts` with the encoder frozen; returns fit metrics.

    objective: the model's Objective (its backbone, head and text encoding); reset: re-initialise the head
    from cfg.seed first (a head newly initialised at load time). Callers usually go through
    `BaseLM.fit_head` / `Objective.fit_head`."""
    cfg = (cfg or HeadFitConfig()).validate()
    head, params = _head_and_params(objective, model)
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) < 2:
        raise DataError("head fitting needs at least 2 non-empty texts; pass the training corpus")
    t0 = time.perf_counter()
    if reset:  # newly initialised at load time from the global RNG: make it seed-determined
        objective.init_head(model, cfg.seed)
    model.eval()
    train_texts, held_texts = _split(texts, cfg)
    train = _prepare(objective, model, tokenizer, train_texts, cfg, salt=1)
    held = _prepare(objective, model, tokenizer, held_texts, cfg, salt=2) if held_texts else None
    acc_before = _accuracy(head, held[0], held[1]) if held else float("nan")
    losses = _train(model, head, params, train, len(train_texts), cfg)
    return {
        "steps": cfg.steps, "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "n_train_texts": len(train_texts), "n_heldout_texts": len(held_texts),
        "n_train_positions": int(len(train[1])), "n_heldout_positions": int(len(held[1])) if held else 0,
        "trainable_parameters": int(sum(p.numel() for p in params)),
        "heldout_accuracy_before": acc_before,
        "heldout_accuracy_after": _accuracy(head, held[0], held[1]) if held else float("nan"),
        "train_loss_first": losses[0], "train_loss_last": losses[-1],
        "train_loss_curve": _curve(losses), "seconds": round(time.perf_counter() - t0, 3),
    }


@torch.no_grad()
def top1_accuracy(base, masked: Sequence[str], targets: Sequence[str], batch_size: int = 64) -> float:
    """Share of rows whose every labelled sub-token is the model's argmax (e.g. pronoun prediction quality),
    on the objective's training inputs. base: a BaseLM."""
    obj, tok = base.objective, base.tokenizer
    pad = tok.pad_token_id or 0
    device = next(base.model.parameters()).device
    hits, max_len = 0, base.max_input_length()
    for s in range(0, len(masked), batch_size):
        rows = [obj.training_inputs(tok, m, t, max_len) for m, t in zip(masked[s:s + batch_size],
                                                                    targets[s:s + batch_size])]
        enc = collate(rows, pad)
        enc.input_ids, enc.attention_mask = enc.input_ids.to(device), enc.attention_mask.to(device)
        enc.rows, enc.cols = enc.rows.to(device), enc.cols.to(device)
        ok = obj.label_logits(base.model, enc).argmax(-1).cpu() == enc.labels  # (N,)
        rows_i = enc.rows.cpu()
        hits += sum(int(ok[rows_i == i].all()) for i in range(len(rows)))
    return hits / max(1, len(masked))
