"""PNG plots of a GRADIEND comparison, drawn from its stored tables (gradiend_core.compare), never from
models: a heatmap per similarity matrix (one panel per group for grouped tables), the top-k overlap
heatmap (counts with fractions), a top-k Venn diagram of 2 or 3 GRADIENDs (plain matplotlib circles,
region counts) and the cross-encoding heatmaps. Like plots.py: each `plot_*` draws the matching
`*_figure` (a Figure the tests inspect) and writes the PNG atomically.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from gradiend_core.compare.topk import topk_sets, venn_regions
from gradiend_core.errors import DataError
from gradiend_core.plots import _PLOT_LOCK, save_figure

SIGNED = ("cosine_signed", "spearman_signed")
ENCODING_VIEWS = {  # table kind -> (row column, column column, title)
    "cross": ("gradiend_id", "class", "Mean encoding per GRADIEND and class"),
    "pairwise": ("row_id", "col_id", "Mean encoding of each column GRADIEND's +1 class"),
    "anchor": ("anchor", "class", "Anchor-aligned mean encoding"),
}


def _fmt(v: float, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def draw_heatmap(ax, matrix: pd.DataFrame, labels: list[list[str]], vmin: float, vmax: float, cmap: str) -> None:
    """matrix (R, C) as coloured cells with one text per cell and the index / columns as tick labels."""
    values = matrix.to_numpy(dtype=float)  # (R, C)
    im = ax.imshow(np.ma.masked_invalid(values), vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [str(r) for r in matrix.index])
    mid = (vmin + vmax) / 2
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            on_dark = cmap == "viridis" and math.isfinite(v) and v < mid  # viridis is dark at the low end
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=8, color="white" if on_dark else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def _select(table: pd.DataFrame, measure: str, group_by: str) -> pd.DataFrame:
    sel = table[(table["measure"] == measure) & (table["group_by"] == group_by)]
    if sel.empty:
        raise DataError(f"no {measure!r} rows grouped by {group_by!r} in the similarity table; "
                        f"it holds {sorted(set(zip(table['measure'], table['group_by'])))}")
    return sel


def _square(sel: pd.DataFrame, column: str) -> pd.DataFrame:
    ids = list(dict.fromkeys(sel["row_id"]))
    return sel.pivot(index="row_id", columns="col_id", values=column).loc[ids, ids]


def _panels(n: int, size: float) -> tuple[Figure, list]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(size * cols + 1, size * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def similarity_heatmap_figure(table: pd.DataFrame, measure: str = "cosine", group_by: str = "none") -> Figure:
    """One annotated heatmap per group of `measure` (a single panel when ungrouped)."""
    sel = _select(table, measure, group_by)
    groups = list(dict.fromkeys(sel["group"]))
    fig, axes = _panels(len(groups), 4.0)
    lo = -1.0 if measure in SIGNED else 0.0
    for ax, group in zip(axes, groups):
        m = _square(sel[sel["group"] == group], "value")
        labels = [[_fmt(v) for v in row] for row in m.to_numpy(dtype=float)]
        draw_heatmap(ax, m, labels, lo, 1.0, "RdBu_r" if lo < 0 else "viridis")
        ax.set_title(group if group_by != "none" else f"{measure} ({sel['part'].iloc[0]})", fontsize=10)
    suffix = f" by {group_by}" if group_by != "none" else ""
    fig.suptitle(f"GRADIEND similarity: {measure}{suffix}")
    fig.tight_layout()
    return fig


def topk_overlap_heatmap_figure(table: pd.DataFrame, group_by: str = "none") -> Figure:
    """Top-k overlap: cells coloured by |A∩B| / min(|A|,|B|), labelled "count (percent)"."""
    sel = _select(table, "topk_overlap", group_by)
    groups = list(dict.fromkeys(sel["group"]))
    fig, axes = _panels(len(groups), 4.0)
    for ax, group in zip(axes, groups):
        g = sel[sel["group"] == group].assign(frac=lambda d: d["n_shared"] / np.minimum(d["n_row"], d["n_col"]))
        frac, count = _square(g, "frac"), _square(g, "n_shared")
        labels = [[f"{int(c)}\n({_fmt(100 * f, 0)}%)" for c, f in zip(cr, fr)]
                  for cr, fr in zip(count.to_numpy(), frac.to_numpy(dtype=float))]
        draw_heatmap(ax, frac, labels, 0.0, 1.0, "viridis")
        ax.set_title(group if group_by != "none" else f"top-{sel['topk'].iloc[0]} {sel['part'].iloc[0]}", fontsize=10)
    fig.suptitle("Top-k overlap (count and share of the smaller set)")
    fig.tight_layout()
    return fig


def _venn_geometry(n: int) -> tuple[np.ndarray, float]:
    """Circle centres (n, 2) and radius for 2 or 3 sets."""
    if n == 2:
        return np.array([[-0.55, 0.0], [0.55, 0.0]]), 1.0
    ang = np.deg2rad([90.0, 210.0, 330.0])
    return 0.6 * np.stack([np.cos(ang), np.sin(ang)], axis=1), 1.0


def _region_xy(members: tuple[int, ...], centres: np.ndarray) -> np.ndarray:
    """Where the count of the region of exactly `members` goes."""
    n = len(centres)
    if len(members) == n:
        return centres.mean(0)
    if len(members) == 1:
        return centres[members[0]] * 1.8
    other = [i for i in range(n) if i not in members][0]  # n == 3, a pair
    return -centres[other] * 1.25


def topk_venn_figure(topk: pd.DataFrame, ids: Sequence[str] | None = None, part: str | None = None) -> Figure:
    """Venn diagram of the top-k index sets of 2 or 3 GRADIENDs (a topk_weights table)."""
    sets = topk_sets(topk, ids, part)
    regions = venn_regions(sets)
    names = list(sets)
    centres, r = _venn_geometry(len(names))
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    colors = ["tab:blue", "tab:orange", "tab:green"]
    for i, name in enumerate(names):
        ax.add_patch(Circle(tuple(centres[i]), r, alpha=0.3, color=colors[i], label=f"{name} ({len(sets[name])})"))
    for members, count in regions.items():
        x, y = _region_xy(tuple(names.index(m) for m in members), centres)
        ax.text(x, y, str(count), ha="center", va="center", fontsize=11, gid="+".join(members))
    ax.set_xlim(-2.2, 2.2)
    ax.set_ylim(-2.0, 2.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.legend(loc="upper right", fontsize=8)
    part_name = part or str(topk["part"].iloc[0])
    union = len(np.unique(np.concatenate(list(sets.values()))))
    ax.set_title(f"Top-k {part_name} weights (union {union})")
    fig.tight_layout()
    return fig


def encoding_heatmap_figure(table: pd.DataFrame, kind: str = "cross", normalized: bool = False) -> Figure:
    """A cross-encoding table (compare.cross_encoding: kind cross | pairwise | anchor) as an annotated
    heatmap of the mean encoding, or of the row-normalised values (each row divided by its diagonal)."""
    if kind not in ENCODING_VIEWS:
        raise DataError(f"unknown encoding table kind {kind!r}; use one of: {', '.join(ENCODING_VIEWS)}")
    rows, cols, title = ENCODING_VIEWS[kind]
    value = "normalized" if normalized else ("value" if kind == "pairwise" else "mean")
    m = table.pivot(index=rows, columns=cols, values=value)
    m = m.loc[list(dict.fromkeys(table[rows])), list(dict.fromkeys(table[cols]))]
    finite = np.abs(m.to_numpy(dtype=float)[np.isfinite(m.to_numpy(dtype=float))])
    span = max(1.0, float(finite.max())) if finite.size else 1.0
    fig = Figure(figsize=(1.2 * len(m.columns) + 3, 0.8 * len(m.index) + 2))
    ax = fig.subplots()
    draw_heatmap(ax, m, [[_fmt(v) for v in row] for row in m.to_numpy(dtype=float)], -span, span, "RdBu_r")
    ax.set(title=title + (" (row / diagonal)" if normalized else ""), xlabel=cols, ylabel=rows)
    fig.tight_layout()
    return fig


def plot_similarity_heatmap(table: pd.DataFrame, path: str | Path, measure: str = "cosine",
                            group_by: str = "none") -> Path:
    with _PLOT_LOCK:
        return save_figure(similarity_heatmap_figure(table, measure, group_by), path)


def plot_topk_overlap_heatmap(table: pd.DataFrame, path: str | Path, group_by: str = "none") -> Path:
    with _PLOT_LOCK:
        return save_figure(topk_overlap_heatmap_figure(table, group_by), path)


def plot_topk_venn(topk: pd.DataFrame, path: str | Path, ids: Sequence[str] | None = None,
                   part: str | None = None) -> Path:
    with _PLOT_LOCK:
        return save_figure(topk_venn_figure(topk, ids, part), path)


def plot_encoding_heatmap(table: pd.DataFrame, path: str | Path, kind: str = "cross", normalized: bool = False) -> Path:
    with _PLOT_LOCK:
        return save_figure(encoding_heatmap_figure(table, kind, normalized), path)
