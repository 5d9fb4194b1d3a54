"""Top-k weights per part over base-global indices (D §6 `get_topk_weights`), and the Venn regions of
the top-k sets, computed from the stored table.

`topk_weights` columns (TOPK_COLUMNS): gradiend_id, part, k (the resolved count), rank (0 = most
important), global_index (common layout, see layout.py), param, flat_index, importance (float64 of
the model's float32 weight_importance). k: an int (clipped to the kept dims) or a fraction in (0, 1]
of the kept dims (ceil, at least 1), as the reference; ties: lowest index first.
"""
from __future__ import annotations

from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from gradiend_core.compare.layout import Layout, common_layout, part_vectors
from gradiend_core.errors import ConfigError, DataError
from gradiend_core.gradiend import Gradiend
from gradiend_core.model import resolve_k, topk_indices

TOPK_COLUMNS = ["gradiend_id", "part", "k", "rank", "global_index", "param", "flat_index", "importance"]


def topk_weights(gradiends: Mapping[str, Gradiend], part: str = "decoder-weight", topk: int | float = 1000,
                 layout: Layout | None = None) -> pd.DataFrame:
    """The top-k dims of every GRADIEND by importance of `part`, ordered by rank."""
    layout = common_layout(gradiends) if layout is None else layout
    frames = []
    for gid, g in gradiends.items():
        v = part_vectors(g, part, layout)
        k = resolve_k(topk, len(v))
        pos = topk_indices(torch.from_numpy(v.importance), k).numpy()  # (k,) importance desc
        names, flat = layout.decode(v.index[pos])
        frames.append(pd.DataFrame({
            "gradiend_id": str(gid), "part": part, "k": k, "rank": np.arange(k, dtype=np.int64),
            "global_index": v.index[pos], "param": names, "flat_index": flat,
            "importance": v.importance[pos].astype(np.float64)}, columns=TOPK_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def topk_sets(table: pd.DataFrame, ids: Sequence[str] | None = None, part: str | None = None) -> dict[str, np.ndarray]:
    """gradiend_id -> sorted global indices of its top-k (one part of a topk_weights table)."""
    if part is not None:
        table = table[table["part"] == part]
    if table["part"].nunique() > 1:
        raise DataError(f"the top-k table holds parts {sorted(table['part'].unique())}; pick one with part=")
    ids = list(dict.fromkeys(table["gradiend_id"])) if ids is None else [str(i) for i in ids]
    missing = [i for i in ids if i not in set(table["gradiend_id"])]
    if missing:
        raise DataError(f"no top-k rows for GRADIEND(s) {missing}; known: {sorted(set(table['gradiend_id']))}")
    return {i: np.sort(table.loc[table["gradiend_id"] == i, "global_index"].to_numpy(np.int64)) for i in ids}


def venn_regions(sets: Mapping[str, np.ndarray]) -> dict[tuple[str, ...], int]:
    """Size of every exclusive Venn region: members (ids in the sets' order) -> dims in exactly those sets."""
    ids = list(sets)
    if not 2 <= len(ids) <= 3:
        raise ConfigError(f"a top-k Venn diagram takes 2 or 3 GRADIENDs, got {len(ids)}")
    union = np.unique(np.concatenate([np.asarray(sets[i], dtype=np.int64) for i in ids]))
    member = np.stack([np.isin(union, sets[i]) for i in ids])  # (m, u) bool
    out = {}
    for r in range(1, len(ids) + 1):
        for combo in combinations(range(len(ids)), r):
            want = np.zeros(len(ids), dtype=bool)
            want[list(combo)] = True
            out[tuple(ids[j] for j in combo)] = int(np.sum(np.all(member == want[:, None], axis=0)))
    return out
