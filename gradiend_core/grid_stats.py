"""Paired bootstrap intervals of a decoder grid (numpy; seeded, so the same grid gives the same bytes).

Every table row of the grid (the base model first, then the cells) is scored on the SAME inputs: the
same LMS positions and the same probability rows. So a cell and the base model can be compared item by
item, and the noise of the sample (which ~100 masked tokens, which 12-30 rows) is shared by both:

- LMS: `GridScores.lms_values` (R, n) holds every row's score of every LMS position (1/0 for accuracy,
  a log-probability for log_prob; `Objective.lms_values`). The LMS is `Objective.lms_from_mean` of the
  mean over positions. A bootstrap resample draws n positions with replacement (the same draw for every
  row); the cell-minus-base difference of the resample's LMS gives an interval and a one-sided p-value
  p = (1 + #{resamples with difference >= 0}) / (1 + B): small p = the cell's LMS is below the base's.
- class probabilities: `GridScores.row_probs` (R, N, C) holds P(class) per probability row. The change
  of a mean P(C) over the rows of some dataset classes is bootstrapped over rows, stratified by dataset
  class (each class's rows resampled to its own count), paired with the base model's P(C) on the same
  rows.

Intervals are percentile intervals at `level` (two-sided). Resample counts come from
numpy.random.default_rng([seed, stream]): stream 0 for the LMS positions, 1 + i for dataset class i,
so no number depends on the order in which anything else was drawn.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gradiend_core.errors import DataError

ARRAY_KEYS = ("lms_values", "row_probs")  # per-item lists a grid record carries besides its scalars


@dataclass
class GridScores:
    """The per-item scores behind a grid table (row r of each array = row r of the table)."""

    lms_values: np.ndarray   # (R, n) score of every LMS position
    row_probs: np.ndarray    # (R, N, C) P(class c) on probability row i
    row_dataset: np.ndarray  # (N,) index into dataset_classes of each probability row

    @classmethod
    def from_records(cls, records: Sequence[Mapping], row_dataset: Sequence[int]) -> "GridScores":
        lms = np.asarray([r["lms_values"] for r in records], dtype=np.float64)
        probs = np.asarray([r["row_probs"] for r in records], dtype=np.float64)
        if lms.ndim != 2 or probs.ndim != 3 or probs.shape[1] != len(row_dataset):
            raise DataError("grid records disagree on the LMS positions or probability rows; re-run the grid")
        return cls(lms, probs, np.asarray(row_dataset, dtype=np.int64))

    def frames(self, classes: Sequence[str], dataset_classes: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(LMS positions, probability rows) as long tables keyed by `cell` = the grid table's row."""
        R, n = self.lms_values.shape
        lms = pd.DataFrame({"cell": np.repeat(np.arange(R), n), "position": np.tile(np.arange(n), R),
                            "value": self.lms_values.reshape(-1)})
        N = self.row_probs.shape[1]
        probs = pd.DataFrame({"cell": np.repeat(np.arange(R), N), "row": np.tile(np.arange(N), R),
                              "dataset_class": np.tile(np.asarray(dataset_classes, dtype=object)[self.row_dataset], R)})
        for ci, c in enumerate(classes):
            probs[f"p_{c}"] = self.row_probs[:, :, ci].reshape(-1)
        return lms, probs

    @classmethod
    def from_frames(cls, lms: pd.DataFrame, probs: pd.DataFrame, classes: Sequence[str],
                    dataset_classes: Sequence[str]) -> "GridScores":
        R = int(lms["cell"].max()) + 1
        values = lms.sort_values(["cell", "position"])["value"].to_numpy(dtype=np.float64).reshape(R, -1)
        probs = probs.sort_values(["cell", "row"])
        p = np.stack([probs[f"p_{c}"].to_numpy(dtype=np.float64) for c in classes], -1).reshape(R, -1, len(classes))
        first = probs[probs["cell"] == 0]["dataset_class"].astype(str)
        return cls(values, p, np.asarray([list(dataset_classes).index(d) for d in first], dtype=np.int64))


def resample_counts(n: int, resamples: int, seed: int, stream: int) -> np.ndarray:
    """(B, n) float64: how often each of n items is drawn in each of B resamples of size n."""
    if n < 1:
        raise DataError("nothing to resample: the grid scored no LMS position or probability row")
    rng = np.random.default_rng([int(seed), int(stream)])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=int(resamples)).astype(np.float64)


def _weighted(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(B, n) counts x (R, n) values -> (B, R) sums. numpy's own loop, not BLAS: the summation order is
    fixed, so a grid finalized on another host or with other thread counts gives the same bytes."""
    return np.einsum("bn,rn->br", counts, values, optimize=False)


def _bounds(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(boot, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return lo, hi


@dataclass
class Bootstrap:
    """Paired bootstrap over a grid's items; `base` is the table row every cell is compared with."""

    scores: GridScores
    resamples: int
    seed: int
    level: float
    base: int = 0
    _counts: dict = field(default_factory=dict, repr=False)

    def counts(self, stream: int, n: int) -> np.ndarray:
        if stream not in self._counts:
            self._counts[stream] = resample_counts(n, self.resamples, self.seed, stream)
        return self._counts[stream]

    def lms_diff(self, from_mean: Callable) -> dict[str, np.ndarray]:
        """Per table row (R,): diff = LMS - base LMS, its interval (lo, hi) and the one-sided p-value."""
        v = self.scores.lms_values                                  # (R, n)
        n = v.shape[1]
        boot = from_mean(_weighted(self.counts(0, n), v) / n)       # (B, R) LMS of every resample
        boot = boot - boot[:, [self.base]]
        point = from_mean(v.mean(1)) - from_mean(v[self.base].mean())
        lo, hi = _bounds(boot, self.level)
        p = ((boot >= 0.0).sum(0) + 1.0) / (boot.shape[0] + 1.0)
        return {"diff": np.asarray(point, dtype=float), "lo": lo, "hi": hi, "p": p}

    def change(self, cls_index: int, datasets: Sequence[int]) -> dict[str, np.ndarray]:
        """Per table row (R,): change of mean P(class) over the rows of `datasets` (pooled) vs the base
        model on the same rows, and its interval (stratified by dataset class)."""
        p = self.scores.row_probs[:, :, cls_index]                  # (R, N)
        d = p - p[[self.base]]                                      # (R, N) paired with the base model
        total, boot = 0, 0.0
        for di in datasets:
            idx = np.flatnonzero(self.scores.row_dataset == di)
            if idx.size:
                boot = boot + _weighted(self.counts(1 + int(di), idx.size), d[:, idx])  # (B, R) resampled sums
                total += idx.size
        if total == 0:
            nan = np.full(p.shape[0], np.nan)
            return {"diff": nan, "lo": nan, "hi": nan}
        sel = np.isin(self.scores.row_dataset, list(datasets))
        lo, hi = _bounds(boot / total, self.level)
        return {"diff": d[:, sel].mean(1), "lo": lo, "hi": hi}


def change_column(cls: str, dataset: str) -> str:
    return f"change_{cls}_on_{dataset}"


def interval_columns(boot: Bootstrap, from_mean: Callable, classes: Sequence[str],
                     dataset_classes: Sequence[str]) -> dict[str, np.ndarray]:
    """The grid table's interval columns: lms_diff(_lo, _hi), lms_p, and per (class, dataset class)
    change_<C>_on_<D>(_lo, _hi)."""
    lms = boot.lms_diff(from_mean)
    cols = {"lms_diff": lms["diff"], "lms_diff_lo": lms["lo"], "lms_diff_hi": lms["hi"], "lms_p": lms["p"]}
    for di, d in enumerate(dataset_classes):
        for ci, c in enumerate(classes):
            ch = boot.change(ci, [di])
            name = change_column(c, d)
            cols.update({name: ch["diff"], f"{name}_lo": ch["lo"], f"{name}_hi": ch["hi"]})
    return cols
