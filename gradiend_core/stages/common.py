"""Helpers shared by stage modules: loading upstream outputs, splitting work, pinning threads."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import StoreError
from ..io import read_json


def section(cfg_section) -> dict:
    return dataclasses.asdict(cfg_section)


def out_path(manifest: dict) -> Path:
    return Path(manifest["path"])


def info(manifest: dict) -> dict:
    return manifest.get("info", {})


def model_dir(model_manifest: dict) -> Path:
    """prepare-model's model: its own `model/` when a head was fitted, else the source directory."""
    i = info(model_manifest)
    return out_path(model_manifest) / "model" if i["head"] is not None else Path(i["source_dir"])


def store_dir(pre_prune_manifest: dict) -> Path:
    """The gradient store training reads: pre-prune's compact store, or extract's when pruning is off."""
    i = info(pre_prune_manifest)
    return out_path(pre_prune_manifest).parents[1] / i["store_stage"] / i["store_key"]


def load_prepared_model(model_manifest: dict):
    """The base LM recorded by prepare-model (with its objective), checked against its recorded digest."""
    from ..lm import load_base_model

    i = info(model_manifest)
    base = load_base_model(model_dir(model_manifest), allow_missing_head=False,
                           objective=i.get("objective", "auto"))
    if base.digest != i["digest"]:
        raise StoreError(f"model files in {model_dir(model_manifest)} changed since prepare-model recorded digest "
                         f"{i['digest'][:12]} (now {base.digest[:12]}); re-run to refresh prepare-model")
    base.name_or_path = i["name_or_path"]
    return base


def read_manifest_json(manifest: dict, rel: str):
    p = out_path(manifest) / rel
    if not p.exists():
        raise StoreError(f"{p} is missing; the output is incomplete, re-run the flow to recompute it")
    return read_json(p)


def contiguous_runs(items: list, parts: int) -> list[list]:
    """`items` cut into min(parts, len(items)) contiguous runs whose lengths differ by at most one, in
    order and none empty: fanned-out tasks get equal work, and concatenating them restores `items`."""
    k, r = divmod(len(items), parts)
    out, i = [], 0
    for p in range(min(parts, len(items))):
        n = k + (p < r)
        out.append(items[i:i + n])
        i += n
    return out


def pin_torch_threads(n: int) -> None:
    """Run this stage's torch work on exactly n threads.

    The thread count decides float summation order, hence the bytes a stage writes. torch's count is
    process-wide: without pinning, a stage would inherit whatever the previous stage in the same
    process set (extraction sets extract.threads), and Dask/Ray workers (one OMP thread) would write
    other bytes than the threads runner (the machine default). Stages that run side by side in one
    process pin the same count (seeds 1; evaluate-encoder, decoder-grid and rewrite 2).
    """
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
