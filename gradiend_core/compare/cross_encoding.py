"""Cross-encoding: how every GRADIEND encodes the test rows of every class (D §6 cross-encoding and
anchor-aligned matrices), from a long table of encodings, never from models.

Input (ENCODING_COLUMNS): gradiend_id, class (the class of the token whose gradient was encoded:
evaluate-encoder's `source_class`), encoded (latent 0). `encoding_table` builds it from each
GRADIEND's evaluate-encoder table (encoded.parquet); neutral rows are left out.
`directions`: gradiend_id -> {class: +1 | -1 | 0} (Gradiend.directions, context.json).

Outputs (tidy):
- cross_encoding_matrix -> gradiend_id, class, n, mean, std, positive_class, diagonal, normalized:
  mean encoding per (GRADIEND, class); diagonal = the GRADIEND's mean on its own +1 class;
  normalized = mean / diagonal (the row divided by its diagonal; NaN when the diagonal is 0 or missing).
- pairwise_encoding_matrix -> row_id, col_id, column_class, value, diagonal, normalized: the
  reference's GRADIEND x GRADIEND view, cell = mean of row_id's rows of col_id's +1 class.
- anchor_aligned_matrix -> anchor, class, n_gradiends, n_rows, mean, diagonal, normalized: rows are
  classes ("anchors"); a GRADIEND with direction s != 0 for anchor a contributes s * (its mean on class c)
  to cell (a, c), so every contribution is oriented with a positive; the cell is the mean over the
  contributing GRADIENDs (aggregate "mean"). The diagonal (a, a) is the aligned encoding of a's own rows,
  and normalized divides row a by it.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from gradiend_core.errors import DataError

ENCODING_COLUMNS = ["gradiend_id", "class", "encoded"]
CROSS_COLUMNS = ["gradiend_id", "class", "n", "mean", "std", "positive_class", "diagonal", "normalized"]
PAIRWISE_COLUMNS = ["row_id", "col_id", "column_class", "value", "diagonal", "normalized"]
ANCHOR_COLUMNS = ["anchor", "class", "n_gradiends", "n_rows", "mean", "diagonal", "normalized"]
ENCODED_TYPES = ("training", "other_class")


def encoding_table(encoded: Mapping[str, pd.DataFrame], split: str | None = "test") -> pd.DataFrame:
    """The long table from evaluate-encoder tables (columns encoded, type, split, source_class) of one
    split (None: every split); only the class rows (the pair's and the other classes'), no neutral rows."""
    frames = []
    for gid, df in encoded.items():
        missing = {"encoded", "type", "source_class"} - set(df.columns) | ({"split"} - set(df.columns) if split else set())
        if missing:
            raise DataError(f"encoder table of {gid!r} lacks columns {sorted(missing)}; pass evaluate-encoder's encoded.parquet")
        keep = df["type"].isin(ENCODED_TYPES) & ((df["split"] == split) if split else True)
        rows = df[keep]
        frames.append(pd.DataFrame({"gradiend_id": str(gid), "class": rows["source_class"].astype(str).to_numpy(),
                                    "encoded": rows["encoded"].to_numpy(np.float64)}, columns=ENCODING_COLUMNS))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ENCODING_COLUMNS)


def positive_class(directions: Mapping[str, int], gid: str) -> str:
    pos = [c for c, d in directions.items() if int(d) > 0]
    if len(pos) != 1:
        raise DataError(f"GRADIEND {gid!r} has no single +1 class (directions {dict(directions)}); "
                        "pass the directions of a trained pair")
    return pos[0]


def _check_table(table: pd.DataFrame, directions: Mapping[str, Mapping[str, int]]) -> list[str]:
    missing = set(ENCODING_COLUMNS) - set(table.columns)
    if missing:
        raise DataError(f"encoding table lacks columns {sorted(missing)}; columns are {ENCODING_COLUMNS}")
    ids = list(dict.fromkeys(table["gradiend_id"]))
    unknown = [i for i in ids if i not in directions]
    if unknown:
        raise DataError(f"no directions for GRADIEND(s) {unknown}; pass every GRADIEND's directions")
    return ids


def class_order(table: pd.DataFrame, directions: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Classes in order of first appearance: the directions' classes, then any other in the table."""
    named = [c for d in directions.values() for c in d]
    return list(dict.fromkeys(named + list(table["class"].astype(str))))


def cross_encoding_matrix(table: pd.DataFrame, directions: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Mean encoding per (GRADIEND, class), with the diagonal normalisation (see the module docstring)."""
    ids = _check_table(table, directions)
    classes = class_order(table, directions)
    stats = table.groupby(["gradiend_id", "class"], sort=False)["encoded"].agg(["size", "mean", "std"])
    rows = []
    for gid in ids:
        pos = positive_class(directions[gid], gid)
        for c in classes:
            n, mean, std = stats.loc[(gid, c)] if (gid, c) in stats.index else (0, np.nan, np.nan)
            rows.append({"gradiend_id": gid, "class": c, "n": int(n), "mean": float(mean), "std": float(std),
                         "positive_class": pos})
    df = pd.DataFrame(rows, columns=CROSS_COLUMNS[:-2])
    diag = df[df["class"] == df["positive_class"]].set_index("gradiend_id")["mean"]
    df["diagonal"] = df["gradiend_id"].map(diag).astype(np.float64)
    df["normalized"] = _divide(df["mean"], df["diagonal"])
    return df


def _divide(num: pd.Series, den: pd.Series) -> np.ndarray:
    num, den = num.to_numpy(np.float64), den.to_numpy(np.float64)
    out = np.full(num.shape, np.nan)
    ok = np.isfinite(den) & (den != 0)
    out[ok] = num[ok] / den[ok]
    return out


def pairwise_encoding_matrix(cross: pd.DataFrame) -> pd.DataFrame:
    """GRADIEND x GRADIEND: cell (r, c) = r's mean encoding of c's +1 class (from cross_encoding_matrix)."""
    ids = list(dict.fromkeys(cross["gradiend_id"]))
    pos = cross.drop_duplicates("gradiend_id").set_index("gradiend_id")["positive_class"]
    means = cross.set_index(["gradiend_id", "class"])["mean"]
    rows = [{"row_id": r, "col_id": c, "column_class": pos[c], "value": float(means.get((r, pos[c]), np.nan))}
            for r in ids for c in ids]
    df = pd.DataFrame(rows, columns=PAIRWISE_COLUMNS[:4])
    diag = df[df["row_id"] == df["col_id"]].set_index("row_id")["value"]
    df["diagonal"] = df["row_id"].map(diag).astype(np.float64)
    df["normalized"] = _divide(df["value"], df["diagonal"])
    return df


def anchor_aligned_matrix(table: pd.DataFrame, directions: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Class x class, every GRADIEND oriented so the row's anchor class is positive (module docstring)."""
    cross = cross_encoding_matrix(table, directions)
    parts = []
    for gid, d in directions.items():
        mine = cross[cross["gradiend_id"] == gid]
        for anchor, s in d.items():
            if int(s) != 0:
                parts.append(mine.assign(anchor=anchor, aligned=mine["mean"] * int(s)))
    if not parts:
        raise DataError("no GRADIEND has a non-zero class direction; pass the directions of trained pairs")
    long = pd.concat(parts, ignore_index=True)
    long = long[long["n"] > 0]
    agg = long.groupby(["anchor", "class"], sort=False).agg(
        n_gradiends=("gradiend_id", "nunique"), n_rows=("n", "sum"), mean=("aligned", "mean")).reset_index()
    classes = class_order(table, directions)
    anchors = [c for c in classes if c in set(agg["anchor"])]
    full = pd.MultiIndex.from_product([anchors, classes], names=["anchor", "class"])
    agg = agg.set_index(["anchor", "class"]).reindex(full).reset_index()
    agg = agg.fillna({"n_gradiends": 0, "n_rows": 0}).astype({"n_gradiends": "int64", "n_rows": "int64"})
    diag = agg[agg["anchor"] == agg["class"]].set_index("anchor")["mean"]
    agg["diagonal"] = agg["anchor"].map(diag).astype(np.float64)
    agg["normalized"] = _divide(agg["mean"], agg["diagonal"])
    return agg[ANCHOR_COLUMNS]
