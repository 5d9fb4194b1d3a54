"""pre-prune: keep the input dims with the largest |mean source gradient| over a stratified sample.

The importance is a streaming reduction over the store (column blocks, bounded memory). The kept
columns are then copied once into a compact store: training and evaluation read only that, since
scattered-column reads of the full store would cost a full scan each time.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import pandas as pd
import torch

from ..grad_store import GradientStore, compact, mean_abs_importance, topk_indices
from .common import out_path, section
from .extract_gradients import read_param_map, write_param_map

NAME = "pre-prune"
VERSION = "1"


def config_slice(cfg) -> dict:
    return {"pre_prune": section(cfg.pre_prune)}


def stratified_rows(rows: pd.DataFrame, n_samples: int, seed: int) -> list[int]:
    """n_samples train rows split evenly over the +1/-1 classes (remainder to the first class)."""
    train = rows[(rows["kind"] == "training") & (rows["split"] == "train") & (rows["label"] != 0)]
    classes = list(dict.fromkeys(train.sort_values("label", ascending=False, kind="stable")["factual_class"]))
    rng = random.Random(seed)
    picked: list[int] = []
    for i, c in enumerate(classes):
        want = n_samples // len(classes) + (1 if i < n_samples % len(classes) else 0)
        pool = list(train.loc[train["factual_class"] == c, "store_row"])
        rng.shuffle(pool)
        picked += pool[:want] if len(pool) >= want else [rng.choice(pool) for _ in range(want)]
    rng.shuffle(picked)
    return picked


def resolve_k(topk: float | int, n: int) -> int:
    return max(1, min(n, math.ceil(topk * n) if isinstance(topk, float) else int(topk)))


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    from ..experiment import PrePruneSection

    p = PrePruneSection(**conf["pre_prune"])
    src_dir = out_path(inputs["extract"])
    pmap = read_param_map(src_dir)
    if not p.enabled:
        write_param_map(out, pmap)
        return {"store_stage": inputs["extract"]["stage"], "store_key": inputs["extract"]["key"],
                "dim": pmap.input_dim, "pruned": False}
    store = GradientStore(src_dir)
    rows = pd.read_parquet(src_dir / "rows.parquet")
    sample = stratified_rows(rows, p.n_samples, p.seed)
    progress(0.05, f"importance over {len(sample)} sampled rows")
    importance = mean_abs_importance(store, sample, p.source)  # (P,)
    keep = topk_indices(importance, resolve_k(p.topk, store.dim))  # sorted local indices
    from safetensors.torch import save_file

    save_file({"keep": keep.contiguous(), "importance": importance[keep].contiguous()}, str(out / "keep.safetensors"))
    write_param_map(out, pmap.select(keep))
    compact(store, out, keep, progress=lambda r, n: progress(0.1 + 0.9 * r / n, f"compacted {r}/{n} rows"))
    return {"store_stage": NAME, "store_key": out.name.split("-")[1], "dim": int(keep.numel()), "pruned": True, "unpruned_dim": store.dim,
            "sample_rows": sample, "kept_per_param": kept_per_param(pmap, keep)}


def kept_per_param(pmap, keep: torch.Tensor) -> dict[str, int]:
    counts, offset = {}, 0
    for s in pmap.specs:
        n = s.n_selected
        counts[s.name] = int(((keep >= offset) & (keep < offset + n)).sum())
        offset += n
    return counts
