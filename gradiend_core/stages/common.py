"""Helpers shared by stage modules: config slices, splitting work, pinning threads."""
from __future__ import annotations

import dataclasses


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
