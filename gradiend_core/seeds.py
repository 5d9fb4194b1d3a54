"""Multi-seed selection: which of several GRADIEND runs (same data, different init) to keep.

A run is a dict {"seed": int, "stats": <train_gradiend stats>, "eval_correlation": float (optional,
the validation-set correlation of the best checkpoint)}.

Multi-seed convergence (reference): best step past step 0 (the run improved on its step-0 score),
SIGNED best correlation >= threshold, both target-class |means| >= mean_threshold, and class means of
opposite sign. The single-run check in training uses |correlation|, so a run whose best correlation
is e.g. -0.55 is "converged" on its own but not convergent here; with sign normalisation (flip at
< -0.6) good runs end up positive, and a negative one would encode the classes the wrong way round.

Selection (reference): the highest selection score among convergent runs, where selection score =
eval_correlation if given, else the best training correlation ("best_convergent_selection_score");
if no run converged, the highest selection score, then the highest training correlation
("highest_correlation_fallback"). Ties go to the lowest seed.
Deviation from the reference: runs without evaluation (converged None) are never convergent and
rank below every evaluated run in the fallback; the reference's third tier (convergence value)
is folded into the training-correlation tie-break.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gradiend_core.errors import ConfigError, DataError

STRATEGY_CONVERGENT = "best_convergent_selection_score"
STRATEGY_FALLBACK = "highest_correlation_fallback"


@dataclass
class SeedSelectionConfig:
    threshold: float = 0.5
    mean_threshold: float = 0.5
    min_convergent_seeds: int = 1  # reported as enough_convergent (every seed is trained; no early stop)

    def validate(self) -> "SeedSelectionConfig":
        for name in ("threshold", "mean_threshold"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"seed selection {name} must be in [0, 1], got {v!r}; fix the seed config")
        m = self.min_convergent_seeds
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError(f"min_convergent_seeds must be an int >= 1, got {m!r}; fix the seed config")
        return self


def seeds_for(base_seed: int, max_seeds: int) -> list[int]:
    """Seeds tried in order: base_seed, base_seed + 1, ..."""
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, int) or max_seeds < 1:
        raise ConfigError(f"max_seeds must be an int >= 1, got {max_seeds!r}; train at least one seed")
    return [int(base_seed) + i for i in range(max_seeds)]


def run_summary(run: dict, cfg: SeedSelectionConfig) -> dict:
    """Per-run metrics used for selection (JSON-able)."""
    if "seed" not in run or "stats" not in run:
        raise DataError(f"a seed run needs 'seed' and 'stats' keys, got {sorted(run)}; pass train_gradiend's stats")
    stats = run["stats"]
    best = stats.get("best") or {}
    corr = best.get("correlation")
    means = best.get("mean_by_class") or {}
    eval_corr = run.get("eval_correlation")
    score = eval_corr if eval_corr is not None else corr
    return {
        "seed": int(run["seed"]),
        "converged": is_convergent(stats, cfg),
        "trained_converged": stats.get("converged"),
        "best_step": best.get("step"),
        "best_correlation": corr,
        "eval_correlation": eval_corr,
        "mean_by_class": {"1": means.get("1"), "-1": means.get("-1")},
        "selection_score": score,
    }


def is_convergent(stats: dict, cfg: SeedSelectionConfig) -> bool:
    """Multi-seed convergence of one run's stats (signed correlation, see module docstring)."""
    if stats.get("converged") is None:
        return False  # never evaluated: unknown counts as not convergent
    best = stats.get("best") or {}
    corr, step = best.get("correlation"), best.get("step")
    m_pos = (best.get("mean_by_class") or {}).get("1")
    m_neg = (best.get("mean_by_class") or {}).get("-1")
    if corr is None or step is None or m_pos is None or m_neg is None:
        return False
    improved = (stats.get("convergence") or {}).get("improved_over_step0", True)
    return bool(improved and step > 0 and corr >= cfg.threshold
                and min(abs(m_pos), abs(m_neg)) >= cfg.mean_threshold and m_pos * m_neg < 0)


def enough_convergent(runs: list[dict], cfg: SeedSelectionConfig) -> bool:
    """True once min_convergent_seeds runs are convergent (reported only: every seed is trained)."""
    return sum(is_convergent(r["stats"], cfg) for r in runs) >= cfg.min_convergent_seeds


def _num(v) -> float:
    return float(v) if v is not None and math.isfinite(float(v)) else -math.inf


def select_seed(runs: list[dict], cfg: SeedSelectionConfig | None = None) -> dict:
    """Pick the best run; returns the seed report (JSON-able)."""
    cfg = (cfg or SeedSelectionConfig()).validate()
    if not runs:
        raise DataError("no seed runs to select from; train at least one seed")
    rows = [run_summary(r, cfg) for r in runs]
    seeds = [r["seed"] for r in rows]
    if len(set(seeds)) != len(seeds):
        raise DataError(f"seed runs contain duplicate seeds {seeds}; pass one run per seed")
    convergent = [r for r in rows if r["converged"]]
    if convergent:
        pool, strategy = convergent, STRATEGY_CONVERGENT
        key = lambda r: (-_num(r["selection_score"]), r["seed"])  # noqa: E731
    else:
        pool, strategy = rows, STRATEGY_FALLBACK
        key = lambda r: (-_num(r["selection_score"]), -_num(r["best_correlation"]), r["seed"])  # noqa: E731
    best = min(pool, key=key)
    return {
        "runs": sorted(rows, key=lambda r: r["seed"]),
        "best_seed": best["seed"],
        "best_selection_score": best["selection_score"],
        "strategy": strategy,
        "convergent_count": len(convergent),
        "convergent_seeds": sorted(r["seed"] for r in convergent),
        "enough_convergent": len(convergent) >= cfg.min_convergent_seeds,
        "threshold": cfg.threshold,
        "mean_threshold": cfg.mean_threshold,
        "min_convergent_seeds": cfg.min_convergent_seeds,
    }
