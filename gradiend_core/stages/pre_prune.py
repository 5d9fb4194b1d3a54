"""pre-prune: keep the input dims with the largest |mean source gradient| over a stratified sample.

The selection runs inside extract-gradients, BEFORE the bulk extraction (`sample_keep`): the sampled
rows' full gradients are computed from the model, the top dims chosen, and every row's gradient is
then stored only at the kept dims. That is the reference's order (it prunes, then computes training
gradients at the kept dims) and it is what makes large selections affordable: on the default MiniLM
with word embeddings a row's full factual+alternative gradient is 90 MB in float16, 30 GB for 330
rows, against 9 MB at the default top 10%. The price: changing pre_prune re-extracts.

This stage then only records the selection for the UI and hands the store on: training and
evaluation read extract-gradients' (pruned, or full when pruning is off) store through its manifest.
"""
from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

import pandas as pd
import torch

from ..grad_store import assemble, topk_indices
from .common import info, out_path, section
from .extract_gradients import read_param_map, write_param_map

NAME = "pre-prune"
VERSION = "2"
KEEP_FILE = "keep.safetensors"  # in extract-gradients' output: kept full-map dims + their importance


def config_slice(cfg) -> dict:
    return {"pre_prune": section(cfg.pre_prune)}


def extraction_slice(cfg) -> dict:
    """What of pre_prune decides the stored bytes (part of extract-gradients' key)."""
    return section(cfg.pre_prune) if cfg.pre_prune.enabled else {"enabled": False}


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


def sample_keep(extractor, rows: pd.DataFrame, p, micro: int, progress=None) -> dict:
    """Kept dims (sorted, of the extractor's map), their importance and the sampled store rows.

    importance = |mean over the sampled rows of the source gradient| (P,). The mean of per-example
    gradients is the gradient of the mean loss, so each micro-batch takes one ordinary backward
    (`mean_example_gradient`) and no per-row full-width gradient is ever formed; "diff" is the
    factual mean minus the alternative mean. Accumulated in float64 over micro-batches, so memory
    holds one full-width gradient whatever n_samples is.
    """
    sample = stratified_rows(rows, p.n_samples, p.seed)
    total = torch.zeros(extractor.param_map.input_dim, dtype=torch.float64)  # (P,)
    by_row = rows.set_index("store_row")
    for i in range(0, len(sample), micro):
        r = by_row.loc[sample[i:i + micro]]
        masked = list(r["masked"])
        mean = {kind: extractor.mean_example_gradient(masked, list(r[kind]))
                for kind in (("factual", "alternative") if p.source == "diff" else (p.source,))}
        total += assemble(p.source, mean.get("factual"), mean.get("alternative")).double() * len(r)
        if progress:
            progress(min(i + micro, len(sample)), len(sample))
    importance = (total / len(sample)).abs().float()
    keep = topk_indices(importance, resolve_k(p.topk, importance.numel()))
    return {"keep": keep, "importance": importance[keep].contiguous(), "sample_rows": sample}


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    from ..experiment import PrePruneSection

    p = PrePruneSection(**conf["pre_prune"])
    ext = inputs["extract"]
    pmap = read_param_map(out_path(ext))
    write_param_map(out, pmap)
    i = info(ext)
    common = {"store_stage": ext["stage"], "store_key": ext["key"], "dim": pmap.input_dim}
    if not p.enabled:
        return {**common, "pruned": False}
    pruned = i.get("pre_prune") or {}
    shutil.copyfile(out_path(ext) / KEEP_FILE, out / KEEP_FILE)  # the selection, next to its summary
    return {**common, "pruned": True, "unpruned_dim": pruned.get("unpruned_dim"),
            "sample_rows": pruned.get("sample_rows"), "kept_per_param": pruned.get("kept_per_param")}


def kept_per_param(pmap, keep: torch.Tensor) -> dict[str, int]:
    """Kept dims per tensor of the map: one binary search per tensor boundary in the sorted `keep`
    (a mask over `keep` per tensor took 0.4 s for MiniLM's 101 tensors and 2.26M kept dims)."""
    if keep.numel() > 1 and not bool((keep[1:] > keep[:-1]).all()):
        keep = torch.unique(keep)  # sorted, as the per-tensor counts need
    sizes = torch.tensor([0] + [s.n_selected for s in pmap.specs], dtype=torch.long)
    pos = torch.searchsorted(keep.to(torch.long), torch.cumsum(sizes, 0)).tolist()  # first kept index >= bound
    return {s.name: pos[i + 1] - pos[i] for i, s in enumerate(pmap.specs)}
