"""Similarity matrices of several GRADIENDs (D §6 `compute_similarity_matrix`,
`compute_grouped_similarity_matrices`) as tidy tables, one row per ordered pair (row_id, col_id).

Columns (SIMILARITY_COLUMNS): measure, part, topk ("none" or the given int / fraction as text),
value_kind (topk_overlap: intersection | intersection_frac; else ""), group_by ("none" | "layer" |
"component" | "param" | "custom"), group ("all" when ungrouped), row_id, col_id, value, n_row, n_col
(the supports' sizes: kept dims, or top-k dims), n_shared (dims in both supports).
With a group, both supports are first restricted to the group's tensors, then the top-k (an int, or a
fraction of the GRADIEND's dims in the group) is taken inside the group.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

from gradiend_core.compare.groups import group_function
from gradiend_core.compare.layout import Layout, PartVectors, common_layout, part_vectors
from gradiend_core.compare.measures import MEASURES, NEEDS_TOPK, default_part, shared
from gradiend_core.compare.measures import measure as measure_value
from gradiend_core.errors import ConfigError
from gradiend_core.gradiend import Gradiend

SIMILARITY_COLUMNS = ["measure", "part", "topk", "value_kind", "group_by", "group", "row_id", "col_id", "value",
                      "n_row", "n_col", "n_shared"]
TopK = int | float | None


def check_request(ids: list[str], name: str, topk: TopK) -> None:
    if len(ids) < 2:
        raise ConfigError(f"a similarity matrix needs at least 2 GRADIENDs, got {len(ids)}")
    if name not in MEASURES:
        raise ConfigError(f"unknown similarity measure {name!r}; use one of: {', '.join(MEASURES)}")
    if name in NEEDS_TOPK and topk is None:
        raise ConfigError(f"measure {name!r} needs a top-k (an int or a fraction in (0, 1])")


def pair_records(vectors: Mapping[str, PartVectors], name: str, topk: TopK, value: str) -> list[dict]:
    """One record per ordered pair; each unordered pair is computed once (every measure is symmetric)."""
    sup = {i: v.topk(topk) for i, v in vectors.items()}
    ids, out = list(sup), {}
    for r_pos, r in enumerate(ids):
        for c in ids[r_pos:]:
            v = measure_value(name, sup[r], sup[c], value)
            n_shared = int(shared(sup[r], sup[c])[0].size)
            out[r, c] = {"row_id": r, "col_id": c, "value": v, "n_row": len(sup[r]), "n_col": len(sup[c]),
                         "n_shared": n_shared}
            out[c, r] = {**out[r, c], "row_id": c, "col_id": r, "n_row": len(sup[c]), "n_col": len(sup[r])}
    return [out[r, c] for r in ids for c in ids]


def _frame(records: list[dict], name: str, part: str, topk: TopK, value: str, group_by: str,
           group: str) -> pd.DataFrame:
    meta = {"measure": name, "part": part, "topk": "none" if topk is None else str(topk),
            "value_kind": value if name == "topk_overlap" else "", "group_by": group_by, "group": group}
    df = pd.DataFrame([{**meta, **r} for r in records], columns=SIMILARITY_COLUMNS)
    return df.astype({"value": "float64", "n_row": "int64", "n_col": "int64", "n_shared": "int64"})


def all_vectors(gradiends: Mapping[str, Gradiend], part: str, layout: Layout | None = None) -> dict[str, PartVectors]:
    layout = common_layout(gradiends) if layout is None else layout
    return {str(i): part_vectors(g, part, layout) for i, g in gradiends.items()}


def similarity_matrix(gradiends: Mapping[str, Gradiend], measure: str = "cosine", part: str | None = None,
                      topk: TopK = None, value: str = "intersection_frac",
                      vectors: Mapping[str, PartVectors] | None = None) -> pd.DataFrame:
    """Pairwise `measure` over base-global indices (tidy table, see the module docstring).
    part: default encoder-weight (decoder-weight for topk_overlap). vectors: precomputed all_vectors."""
    check_request([str(i) for i in gradiends], measure, topk)
    part = part or default_part(measure)
    vectors = all_vectors(gradiends, part) if vectors is None else vectors
    return _frame(pair_records(vectors, measure, topk, value), measure, part, topk, value, "none", "all")


def _group_labels(layout: Layout, group_by: str | Callable[[str], str]) -> tuple[np.ndarray, list[str]]:
    """Group number of every layout tensor (T,) and the group labels in display order."""
    label_of, sort_key = group_function(group_by)
    labels = [str(label_of(n)) for n in layout.names]
    order = sorted(dict.fromkeys(labels), key=sort_key)
    return np.array([order.index(lab) for lab in labels], dtype=np.int64), order


def grouped_similarity(gradiends: Mapping[str, Gradiend], group_by: str | Callable[[str], str] = "component",
                       measure: str = "cosine", part: str | None = None, topk: TopK = None,
                       value: str = "intersection_frac", vectors: Mapping[str, PartVectors] | None = None,
                       layout: Layout | None = None) -> pd.DataFrame:
    """`similarity_matrix` per parameter group ("param" | "layer" | "component" | tensor name -> label);
    a group that some GRADIEND has no dims in is still listed (its cells NaN or 0).
    vectors / layout: precomputed all_vectors of the part and their common_layout."""
    check_request([str(i) for i in gradiends], measure, topk)
    part = part or default_part(measure)
    layout = common_layout(gradiends) if layout is None else layout
    tensor_group, order = _group_labels(layout, group_by)
    vectors = all_vectors(gradiends, part, layout) if vectors is None else vectors
    dim_group = {i: tensor_group[layout.tensor_of(v.index)] for i, v in vectors.items()}  # (n,) per GRADIEND
    kind = group_by if isinstance(group_by, str) else "custom"
    frames = []
    for gi, label in enumerate(order):
        sub = {i: v.take(dim_group[i] == gi) for i, v in vectors.items()}
        frames.append(_frame(pair_records(sub, measure, topk, value), measure, part, topk, value, kind, label))
    return pd.concat(frames, ignore_index=True)


def as_matrix(table: pd.DataFrame, column: str = "value") -> pd.DataFrame:
    """A one-matrix slice of a similarity table as a square frame (row_id x col_id, first-seen order)."""
    keys = ["measure", "part", "topk", "value_kind", "group_by", "group"]
    if len(table[keys].drop_duplicates()) != 1:
        raise ConfigError("the table holds several matrices; select one measure / part / top-k / group first")
    ids = list(dict.fromkeys(table["row_id"]))
    return table.pivot(index="row_id", columns="col_id", values=column).loc[ids, ids]
