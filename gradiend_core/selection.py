"""Selection policies: pick one (feature factor, learning rate) cell of the decoder grid for a metric.

A candidate is a dict {"feature_factor", "learning_rate", "lms", "metric"} (extra keys are kept); the
significance policy also reads "lms_p", the paired bootstrap p-value that the cell's LMS is not below
the base model's (gradiend_core/grid_stats.py: small = significantly below).
Candidates are first put in sorted (feature_factor, learning_rate) order, so "ties -> first" means the
smallest learning rate of the smallest feature factor, whatever order the caller passed them in.
The base (unmodified) model is never a candidate; `select` returns None for an empty list.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

from gradiend_core.errors import ConfigError


class SelectionPolicy(Protocol):
    name: str

    def select(self, candidates: list[dict], base_lms: float) -> dict | None: ...


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def _sorted(candidates: list[dict]) -> list[dict]:
    return sorted(candidates, key=lambda c: (float(c["feature_factor"]), float(c["learning_rate"])))


def _argmax(candidates: list[dict], score) -> dict | None:
    """First candidate (in the given order) with the largest finite score; None if no score is finite."""
    best, best_score = None, -math.inf
    for c in candidates:
        s = score(c)
        if _finite(s) and s > best_score:  # strict: ties keep the earlier candidate
            best, best_score = c, s
    return best


def _gentlest(cands: list[dict]) -> dict | None:
    """The fallback when no cell keeps the LMS: the smallest non-zero |lr| (first in sorted order)."""
    nonzero = [c for c in cands if float(c["learning_rate"]) != 0.0]
    if not nonzero:
        return None
    smallest = min(abs(float(c["learning_rate"])) for c in nonzero)
    return next(c for c in nonzero if abs(float(c["learning_rate"])) == smallest)


@dataclass(frozen=True)
class LMSThresholdPolicy:
    """Best metric among cells that keep lms >= ratio * base_lms (reference default, ratio 0.99).

    If no cell keeps the LMS, fall back to the gentlest rewrite: the smallest non-zero |lr|.
    """

    ratio: float = 0.99
    name: ClassVar[str] = "lms_threshold"

    def __post_init__(self):
        if not (_finite(self.ratio) and self.ratio > 0):
            raise ConfigError(f"lms_ratio must be a positive number (e.g. 0.99), got {self.ratio}")

    def select(self, candidates: list[dict], base_lms: float) -> dict | None:
        cands = _sorted(candidates)
        floor = self.ratio * float(base_lms)
        passing = [c for c in cands if _finite(c["lms"]) and float(c["lms"]) >= floor]
        best = _argmax(passing, lambda c: float(c["metric"]))
        return best if best is not None else _gentlest(cands)


@dataclass(frozen=True)
class LMSSignificancePolicy:
    """Best metric among cells whose LMS is NOT significantly below the base model's: a cell is dropped
    when its paired bootstrap p-value `lms_p` (one-sided: is the cell's LMS below the base's?) is below
    `alpha`. Unlike a fixed ratio, this asks whether the LMS drop is larger than the sampling noise of
    the LMS positions, which both models share.

    If every cell is significantly below, fall back to the gentlest rewrite: the smallest non-zero |lr|.
    """

    alpha: float = 0.05
    name: ClassVar[str] = "lms_significance"

    def __post_init__(self):
        if not (_finite(self.alpha) and 0.0 < float(self.alpha) < 1.0):
            raise ConfigError(f"alpha must be a number in (0, 1) (e.g. 0.05), got {self.alpha}")

    def select(self, candidates: list[dict], base_lms: float) -> dict | None:
        cands = _sorted(candidates)
        if any(not _finite(c.get("lms_p")) for c in cands):
            raise ConfigError("the lms_significance policy needs each cell's paired bootstrap p-value (lms_p); "
                              "re-run decoder-grid, or use policy lms_threshold")
        passing = [c for c in cands if float(c["lms_p"]) >= self.alpha]
        best = _argmax(passing, lambda c: float(c["metric"]))
        return best if best is not None else _gentlest(cands)


@dataclass(frozen=True)
class LMSTimesMetricPolicy:
    """Cell maximising metric * lms (trades the effect against damage to language modelling)."""

    name: ClassVar[str] = "lms_times_metric"

    def select(self, candidates: list[dict], base_lms: float) -> dict | None:
        return _argmax(_sorted(candidates), lambda c: float(c["metric"]) * float(c["lms"]))


_POLICIES = {"lms_threshold": LMSThresholdPolicy, "lms_times_metric": LMSTimesMetricPolicy,
             "lms_significance": LMSSignificancePolicy}
_POLICY_KWARGS = {"lms_threshold": {"ratio"}, "lms_times_metric": set(), "lms_significance": {"alpha"}}
POLICY_NAMES = tuple(_POLICIES)


def get_policy(name: str, **kw) -> SelectionPolicy:
    """Build a policy by name ("lms_threshold" takes ratio=; "lms_significance" alpha=; "lms_times_metric"
    nothing)."""
    if name not in _POLICIES:
        raise ConfigError(f"unknown selection policy {name!r}; use one of {sorted(_POLICIES)}")
    unknown = set(kw) - _POLICY_KWARGS[name]
    if unknown:
        raise ConfigError(f"policy {name!r} does not take {sorted(unknown)}; "
                          f"allowed options: {sorted(_POLICY_KWARGS[name]) or 'none'}")
    return _POLICIES[name](**kw)
