"""Helpers shared by stage modules: config slices, splitting work, pinning threads."""
from __future__ import annotations

import dataclasses

from .runner import RUNTIME

DEFAULT_DTYPE = "float32"


def section(cfg_section) -> dict:
    return dataclasses.asdict(cfg_section)


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


def placement(cfg) -> dict:
    """The slice entries of a stage that runs the base model: model.dtype (hashed, and only when it is not
    float32, the dtype of every key before the setting existed) and model.device (RUNTIME: not hashed)."""
    dtype = {} if cfg.model.dtype == DEFAULT_DTYPE else {"model_dtype": cfg.model.dtype}
    return {**dtype, RUNTIME: {"device": cfg.model.device}}


def base_placement(conf: dict) -> tuple:
    """(torch.device on this host, dtype name) a build runs the base model on (see placement)."""
    from ..devices import resolve_device

    runtime = conf.get(RUNTIME) or {}
    return resolve_device(runtime.get("device", "cpu")), conf.get("model_dtype", DEFAULT_DTYPE)
