"""Which stored gradient rows feed GRADIEND training and evaluation, and reading them from the store.

Rows live in an extract-gradients store (grad_store.GradientStore) with a row index (rows.parquet:
kind, split, classes, store_row). A GRADIEND is trained on the transitions of its pair (A, B) only:
A->B rows (label +1) and B->A rows (label -1); rows of every other transition are evaluated on their
own (the reference keeps only the pair's transitions too, unless include_other_classes). Training
takes base batches of same-class train rows; in-training and encoder evaluation encode held-out rows.
P = stored dims.
"""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import torch

from .errors import DataError, StoreError
from .grad_store import GradientStore, assemble
from .training import EvalSet

EVAL_CHUNK = 4  # rows read per evaluation chunk: bounds the read transient (2 kinds x 4 x P float32)
EVAL_CACHE_BYTES = 512 * 2**20  # validation sources up to this size (float32) are read once per seed


def pair_rows(rows: pd.DataFrame, split: str | None, pair: tuple[str, str]) -> pd.DataFrame:
    """The pair's A->B and B->A training rows (of one split, or all with None), with their label:
    +1 where the factual class is A, -1 where it is B."""
    a, b = pair
    f, t = rows["factual_class"], rows["alternative_class"]
    keep = (rows["kind"] == "training") & (((f == a) & (t == b)) | ((f == b) & (t == a)))
    if split is not None:
        keep &= rows["split"] == split
    return rows[keep].assign(label=lambda d: (d["factual_class"] == a).map({True: 1, False: -1}).astype("int8"))


def batch_plan(rows: pd.DataFrame, base_batch_size: int, seed: int, pair: tuple[str, str]) -> list[list[int]]:
    """Store rows of each base batch: per class shuffled, full batches, round-robin over classes."""
    groups = []
    for _, g in sorted(pair_rows(rows, "train", pair).groupby("label"), key=lambda kv: -kv[0]):  # +1 class first
        idx = list(g["store_row"])
        random.Random(seed).shuffle(idx)
        groups.append([idx[i:i + base_batch_size] for i in range(0, len(idx) - base_batch_size + 1, base_batch_size)])
    groups = [g for g in groups if g]
    if not groups:
        raise DataError(f"no full training batch of {base_batch_size} rows; lower train.base_batch_size "
                        f"or add data (data.max_per_class)")
    # round-robin over classes; a smaller class is cycled, a larger one's tail is not visited (reference)
    plan = []
    for b in range(sum(len(g) for g in groups)):
        g = groups[b % len(groups)]
        plan.append(g[(b // len(groups)) % len(g)])
    return plan


def read_batches(store: GradientStore, plan: list[list[int]], batch_size: int, source: str, target: str):
    """(source (G, P), target (G, P)) per optimizer step: each of the G vectors is a base batch's mean."""
    for i in range(0, len(plan) - batch_size + 1, batch_size):
        src, tgt = [], []
        for b in plan[i:i + batch_size]:
            g_f, g_a = store.rows("factual", b).mean(0), store.rows("alternative", b).mean(0)  # (P,)
            src.append(assemble(source, g_f, g_a))
            tgt.append(assemble(target, g_f, g_a))
        yield torch.stack(src), torch.stack(tgt)


def eval_label_sign(source: str) -> int:
    """An alternative-token gradient carries the other class: its label is negated (reference)."""
    return -1 if source == "alternative" else 1


def eval_rows(rows: pd.DataFrame, split: str, pair: tuple[str, str], max_rows_per_class: int | None) -> pd.DataFrame:
    """The pair's rows of `split` that in-training evaluation encodes (the first ones per class if capped)."""
    ev = pair_rows(rows, split, pair)
    return ev if max_rows_per_class is None else ev.groupby("factual_class", sort=False).head(max_rows_per_class)


EVAL_SPLITS = ("validation", "test", "train")  # in-training evaluation: the first with rows (reference order)


def eval_split(rows: pd.DataFrame, pair: tuple[str, str]) -> str:
    """The split in-training evaluation encodes: validation, else test, else train (the reference's
    split role for evaluation), the first that holds rows of the pair."""
    present = set(pair_rows(rows, None, pair)["split"])
    return next((s for s in EVAL_SPLITS if s in present), EVAL_SPLITS[0])


def make_eval_set(rows: pd.DataFrame, store: GradientStore, split: str, source: str,
                  max_rows_per_class: int | None, pair: tuple[str, str]) -> EvalSet | None:
    """In-training evaluation rows of `split` (None when there are none)."""
    ev = eval_rows(rows, split, pair, max_rows_per_class)
    if ev.empty:
        return None
    idx = list(ev["store_row"])

    def read():
        for i in range(0, len(idx), EVAL_CHUNK):
            part = idx[i:i + EVAL_CHUNK]
            yield assemble(source, store.rows("factual", part), store.rows("alternative", part))  # (n, P)

    if len(idx) * store.dim * 4 > EVAL_CACHE_BYTES:
        sources = read  # streamed again at every evaluation: memory stays one chunk
    else:  # read once, reused by every in-training evaluation (the same rows each time)
        cached = list(read())

        def sources():
            return iter(cached)

    labels = torch.tensor(ev["label"].to_numpy(), dtype=torch.float32) * eval_label_sign(source)
    return EvalSet(sources=sources, labels=labels, classes=list(ev["factual_class"]))


def store_columns(model_pmap, store_pmap) -> torch.Tensor:
    """Store columns holding the model's input dims (matched by stable base-global index)."""
    store_global = store_pmap.local_to_global()
    model_global = model_pmap.local_to_global()
    cols = torch.searchsorted(store_global, model_global)
    last = store_global.numel() - 1
    if (cols > last).any() or not torch.equal(store_global[cols.clamp(max=last)], model_global):
        raise StoreError("the GRADIEND's input dims are not all in the gradient store; re-run pre-prune")
    return cols


def encode_stored(g, store: GradientStore, rows: pd.DataFrame, cols: torch.Tensor, source: str) -> np.ndarray:
    """The GRADIEND's encoding (latent 0) of each row; neutral rows encode their factual gradient."""
    out = []
    full = cols.numel() == store.dim and bool((cols == torch.arange(store.dim)).all())
    for i in range(0, len(rows), EVAL_CHUNK):
        part = list(rows["store_row"].iloc[i:i + EVAL_CHUNK])
        neutral = torch.tensor((rows["kind"].iloc[i:i + EVAL_CHUNK] == "neutral").to_numpy())  # (n,) bool
        g_f, g_a = store.rows("factual", part), store.rows("alternative", part)  # (n, P) each
        x = assemble(source, g_f, g_a)
        x[neutral] = g_f[neutral]  # neutral rows have no alternative: encode their factual gradient
        x = x if full else x[:, cols]
        out.append(g.encode(x)[:, 0].double().numpy())
    return np.concatenate(out) if out else np.zeros(0)
