"""Encoder metrics: how well a GRADIEND's 1-d encoding separates the two target classes.

Rows are encoded gradients with a label in {+1, -1} (the two target classes) or 0 (identity /
neutral rows), an optional row type ("training", "neutral_dataset", "neutral_training_masked", ...),
an optional data split and an optional class name. Everything returned is plain Python
(float/int/str/None) so it can be written to JSON directly; label keys are strings ("1", "-1", "0").

Row subsets (reference names):
  all_data            every row
  training_only       rows whose type does not contain "neutral" (identity rows with label 0 included)
  target_classes_only training_only rows with label != 0
The headline `correlation` is Pearson(label, encoded) over training_only.

Accuracy uses the reference boundaries -0.5 / +0.5: all_data and training_only compare ternary
classes (<= -0.5 -> -1, >= +0.5 -> +1, else 0) for label and prediction; target_classes_only is
binary (encoded >= 0 -> +1, else -1).

Spread statistics (std) use ddof=1 (the pandas convention); a class with one row has std 0.0.
An undefined Pearson (fewer than 2 rows, zero variance, NaN) is 0.0, as in the reference.
Deviation from the reference: per-split blocks (with their own Pearson) are computed for any `splits`
given; the reference's split-generalisation analysis is not reproduced here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gradiend_core.errors import DataError

NEG_BOUNDARY = -0.5
POS_BOUNDARY = 0.5


def pearson(x, y) -> float:
    """Pearson correlation of two 1-d arrays; 0.0 when undefined (n < 2, zero variance, NaN)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise DataError(f"pearson got arrays of length {x.size} and {y.size}; pass one value per row in both")
    if x.size < 2:
        return 0.0
    xc, yc = x - x.mean(), y - y.mean()
    denom = float(np.sqrt((xc * xc).sum() * (yc * yc).sum()))
    if denom == 0.0 or not np.isfinite(denom):
        return 0.0
    r = float((xc * yc).sum() / denom)
    return float(np.clip(r, -1.0, 1.0)) if np.isfinite(r) else 0.0


def label_key(value: float) -> str:
    """JSON key of a label value: 1.0 -> "1", -1.0 -> "-1", 0.0 -> "0"."""
    v = float(value)
    return str(int(v)) if v.is_integer() else repr(v)


def ternary(values: np.ndarray) -> np.ndarray:
    """Map values to -1 (<= -0.5), +1 (>= +0.5) or 0 (in between)."""
    out = np.zeros(values.shape, dtype=np.int64)
    out[values <= NEG_BOUNDARY] = -1
    out[values >= POS_BOUNDARY] = 1
    return out


def encoder_metrics(
    encoded,
    labels,
    types: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
) -> dict:
    """All encoder metrics of one evaluation (see the module docstring for the definitions).

    encoded (N,), labels (N,); types/splits/classes: one string per row or None.
    Raises DataError if fewer than 2 training rows exist or all their labels are equal.
    """
    enc, lab = _as_rows(encoded, labels)
    n = enc.size
    types_a = _as_strings(types, n, "types", default="training")
    train = np.array(["neutral" not in t for t in types_a], dtype=bool)
    _check_training_rows(lab[train])
    target = train & (lab != 0)

    out: dict = {
        "correlation": pearson(lab[train], enc[train]),
        "n": int(n),
        "all_data": _subset_block(enc, lab, np.ones(n, dtype=bool), binary=False),
        "training_only": _subset_block(enc, lab, train, binary=False),
        "target_classes_only": _subset_block(enc, lab, target, binary=True),
    }
    out.update(_class_stats(enc[train], lab[train]))
    out["mean_by_type"] = _group_mean(enc, types_a, absolute=False)
    out["abs_mean_by_type"] = _group_mean(enc, types_a, absolute=True)
    if classes is not None:
        names = _as_strings(classes, n, "classes")
        out["mean_by_class_name"] = _group_mean(enc, names, absolute=False)
    if splits is not None:
        split_a = _as_strings(splits, n, "splits")
        out["by_split"] = _split_blocks(enc, lab, train, split_a)
    return out


# ---------------------------------------------------------------------- pieces
def _as_rows(encoded, labels) -> tuple[np.ndarray, np.ndarray]:
    enc = np.asarray(_to_numpy(encoded), dtype=np.float64)
    if enc.ndim == 2 and enc.shape[1] >= 1:
        enc = enc[:, 0]  # multi-dim latent: metrics on dim 0 (reference convention)
    enc = enc.reshape(-1)
    lab = np.asarray(_to_numpy(labels), dtype=np.float64).reshape(-1)
    if enc.size != lab.size:
        raise DataError(f"got {enc.size} encodings but {lab.size} labels; pass one label per encoded row")
    if not np.all(np.isfinite(enc)):
        raise DataError("encoded values contain NaN/inf; check the GRADIEND weights and input gradients")
    return enc, lab


def _to_numpy(x):
    if hasattr(x, "detach"):  # torch tensor without importing torch here
        return x.detach().cpu().numpy()
    return x


def _as_strings(values, n: int, what: str, default: str | None = None) -> np.ndarray:
    if values is None:
        return np.array([default] * n, dtype=object)
    arr = np.array([str(v) for v in values], dtype=object)
    if arr.size != n:
        raise DataError(f"{what} has {arr.size} entries for {n} rows; pass one {what[:-1]} per row")
    return arr


def _check_training_rows(lab: np.ndarray) -> None:
    if lab.size < 2:
        raise DataError(f"encoder metrics need at least 2 non-neutral rows, got {lab.size}; "
                        "evaluate on more training-type rows")
    if np.all(lab == lab[0]):
        raise DataError(f"all {lab.size} non-neutral rows have label {label_key(lab[0])}; "
                        "the evaluation needs rows of both target classes")


def _accuracy(enc: np.ndarray, lab: np.ndarray, binary: bool) -> float | None:
    if enc.size == 0:
        return None
    if binary:
        pred = np.where(enc >= 0, 1, -1)
        truth = np.where(lab >= 0, 1, -1)
    else:
        pred, truth = ternary(enc), ternary(lab)
    return float((pred == truth).mean())


def _subset_block(enc: np.ndarray, lab: np.ndarray, mask: np.ndarray, binary: bool) -> dict:
    e, l = enc[mask], lab[mask]
    return {"correlation": pearson(l, e), "accuracy": _accuracy(e, l, binary), "n": int(mask.sum())}


def _class_stats(enc: np.ndarray, lab: np.ndarray) -> dict:
    """mean/std/min/max/q1/q3/n of the encoding per label value (non-neutral rows)."""
    names = ("mean", "std", "min", "max", "q1", "q3", "n")
    out: dict = {f"{k}_by_class": {} for k in names}
    for value in sorted(set(lab.tolist()), reverse=True):
        e = enc[lab == value]
        key = label_key(value)
        out["mean_by_class"][key] = float(e.mean())
        out["std_by_class"][key] = float(e.std(ddof=1)) if e.size > 1 else 0.0
        out["min_by_class"][key] = float(e.min())
        out["max_by_class"][key] = float(e.max())
        out["q1_by_class"][key] = float(np.quantile(e, 0.25))
        out["q3_by_class"][key] = float(np.quantile(e, 0.75))
        out["n_by_class"][key] = int(e.size)
    return out


def _group_mean(enc: np.ndarray, groups: np.ndarray, absolute: bool) -> dict:
    vals = np.abs(enc) if absolute else enc
    return {g: float(vals[groups == g].mean()) for g in sorted(set(groups.tolist()))}


def mean_by_label(enc: np.ndarray, lab: np.ndarray) -> dict:
    """label key -> mean encoding, for every label present."""
    return {label_key(v): float(enc[lab == v].mean()) for v in sorted(set(lab.tolist()), reverse=True)}


def _split_blocks(enc: np.ndarray, lab: np.ndarray, train: np.ndarray, split_a: np.ndarray) -> dict:
    out = {}
    for s in sorted(set(split_a[train].tolist())):
        m = train & (split_a == s)
        out[s] = {"correlation": pearson(lab[m], enc[m]), "mean_by_class": mean_by_label(enc[m], lab[m]),
                  "n": int(m.sum())}
    return out
