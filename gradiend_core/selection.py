"""Selection policies: pick one (feature factor, learning rate) cell of the decoder grid for a metric.

A candidate is a dict {"feature_factor", "learning_rate", "lms", "metric"} (extra keys are kept).
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
        if best is not None:
            return best
        nonzero = [c for c in cands if float(c["learning_rate"]) != 0.0]
        if not nonzero:
            return None
        smallest = min(abs(float(c["learning_rate"])) for c in nonzero)
        return next(c for c in nonzero if abs(float(c["learning_rate"])) == smallest)


@dataclass(frozen=True)
class LMSTimesMetricPolicy:
    """Cell maximising metric * lms (trades the effect against damage to language modelling)."""

    name: ClassVar[str] = "lms_times_metric"

    def select(self, candidates: list[dict], base_lms: float) -> dict | None:
        return _argmax(_sorted(candidates), lambda c: float(c["metric"]) * float(c["lms"]))


_POLICIES = {"lms_threshold": LMSThresholdPolicy, "lms_times_metric": LMSTimesMetricPolicy}
_POLICY_KWARGS = {"lms_threshold": {"ratio"}, "lms_times_metric": set()}


def get_policy(name: str, **kw) -> SelectionPolicy:
    """Build a policy by name ("lms_threshold" takes ratio=; "lms_times_metric" takes nothing)."""
    if name not in _POLICIES:
        raise ConfigError(f"unknown selection policy {name!r}; use one of {sorted(_POLICIES)}")
    unknown = set(kw) - _POLICY_KWARGS[name]
    if unknown:
        raise ConfigError(f"policy {name!r} does not take {sorted(unknown)}; "
                          f"allowed options: {sorted(_POLICY_KWARGS[name]) or 'none'}")
    return _POLICIES[name](**kw)
