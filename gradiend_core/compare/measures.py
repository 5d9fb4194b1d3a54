"""Pairwise similarity of two GRADIENDs' PartVectors (the reference's measures, D §6).

Each GRADIEND contributes its support S (its kept dims, or its top-k dims when a top-k is given) and
its signed weights v over S; vectors are zero-filled over the union of the two supports, computed
sparsely (only the shared dims enter a dot product):
  cosine_signed  sum_{S_a ∩ S_b} <v_a, v_b> / (||v_a|| ||v_b||), norms over each one's own support
  cosine         |cosine_signed|  (a GRADIEND and its inverted twin are identical)
  spearman_signed Pearson correlation of the average ranks of v_a and v_b over S_a ∪ S_b (zero-filled;
                 C > 1 values per dim are ranked flattened)
  spearman       |spearman_signed|
  topk_overlap   |S_a ∩ S_b| ("intersection") or |S_a ∩ S_b| / min(|S_a|, |S_b|) ("intersection_frac")
  mass_overlap   1/2 (||imp_a on S_a ∩ S_b|| / ||imp_a on S_a|| + the same for b), L2 norms of the
                 importance (weight_importance of the part) over the top-k supports
An undefined value (a zero norm, a constant rank vector, an empty support) is NaN.
"""
from __future__ import annotations

import math

import numpy as np

from gradiend_core.compare.layout import PartVectors
from gradiend_core.errors import ConfigError

MEASURES = ("cosine", "cosine_signed", "spearman", "spearman_signed", "topk_overlap", "mass_overlap")
NEEDS_TOPK = ("topk_overlap", "mass_overlap")
OVERLAP_VALUES = ("intersection", "intersection_frac")


def shared(a: PartVectors, b: PartVectors) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a and in b of the dims both hold ((m,), (m,))."""
    _, ia, ib = np.intersect1d(a.index, b.index, assume_unique=True, return_indices=True)
    return ia, ib


def _check_width(a: PartVectors, b: PartVectors) -> None:
    if a.values.shape[1] != b.values.shape[1]:
        raise ConfigError(f"the GRADIENDs have {a.values.shape[1]} and {b.values.shape[1]} values per dim "
                          "(different latent dims); compare a bias part (decoder-bias, decoder-sum) instead")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def cosine_signed(a: PartVectors, b: PartVectors) -> float:
    _check_width(a, b)
    ia, ib = shared(a, b)
    dot = float(np.sum(a.values[ia] * b.values[ib]))
    return _ratio(dot, float(np.linalg.norm(a.values)) * float(np.linalg.norm(b.values)))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x (n,), ties share their average rank (n,) float64."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of each distinct value's last occurrence
    return ((ends - counts + 1 + ends) / 2.0)[inverse.reshape(-1)]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    return _ratio(float(np.sum(xc * yc)), math.sqrt(float(np.sum(xc * xc)) * float(np.sum(yc * yc))))


def spearman_signed(a: PartVectors, b: PartVectors) -> float:
    _check_width(a, b)
    union = np.union1d(a.index, b.index)  # (u,)
    if union.size == 0:
        return math.nan
    x = np.zeros((union.size, a.values.shape[1]))  # (u, C) zero-filled
    y = np.zeros_like(x)
    x[np.searchsorted(union, a.index)] = a.values
    y[np.searchsorted(union, b.index)] = b.values
    return pearson(average_ranks(x.reshape(-1)), average_ranks(y.reshape(-1)))


def topk_overlap(a: PartVectors, b: PartVectors, value: str = "intersection_frac") -> float:
    if value not in OVERLAP_VALUES:
        raise ConfigError(f"unknown top-k overlap value {value!r}; use one of: {', '.join(OVERLAP_VALUES)}")
    n = float(shared(a, b)[0].size)
    return n if value == "intersection" else _ratio(n, float(min(len(a), len(b))))


def mass_overlap(a: PartVectors, b: PartVectors) -> float:
    ia, ib = shared(a, b)
    ia_imp, ib_imp = a.importance.astype(np.float64), b.importance.astype(np.float64)
    fa = _ratio(float(np.linalg.norm(ia_imp[ia])), float(np.linalg.norm(ia_imp)))
    fb = _ratio(float(np.linalg.norm(ib_imp[ib])), float(np.linalg.norm(ib_imp)))
    return 0.5 * (fa + fb)


def measure(name: str, a: PartVectors, b: PartVectors, value: str = "intersection_frac") -> float:
    """The value of measure `name` for one pair (a and b already restricted to their top-k, if any)."""
    if name == "cosine":
        return abs(cosine_signed(a, b))
    if name == "cosine_signed":
        return cosine_signed(a, b)
    if name == "spearman":
        return abs(spearman_signed(a, b))
    if name == "spearman_signed":
        return spearman_signed(a, b)
    if name == "topk_overlap":
        return topk_overlap(a, b, value)
    if name == "mass_overlap":
        return mass_overlap(a, b)
    raise ConfigError(f"unknown similarity measure {name!r}; use one of: {', '.join(MEASURES)}")


def default_part(name: str) -> str:
    """The reference's default part: decoder-weight for topk_overlap, else encoder-weight."""
    return "decoder-weight" if name == "topk_overlap" else "encoder-weight"
