"""Training rows from a labelled table (`tables.LabelledTable`), in the schema of every created data set.

The same steps as for a corpus, with the matching done by the user: rows with the same masked text,
factual word, class and split are one sentence (exact duplicates dropped); per class a seeded shuffle, the
cap (max_per_class) and balance; the table's own splits, or, without a split column, the configured ratios
(split_mode random or vocabulary) per class; then one row per alternative: the table's own, re-cased like
the factual word (as the reference does), or, without an alternative column, one per other class drawn
(seeded) from that class's factual words, as for a corpus.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from gradiend_core.data import schema
from gradiend_core.data.merge import apply_merge
from gradiend_core.data.creation import (DataConfig, _Match, _random_splits, _select, _vocabulary_splits,
                                         alternative_distributions, recase, training_frame)
from gradiend_core.data.tables import LabelledTable
from gradiend_core.errors import DataError

SPLITS = schema.SPLITS


@dataclass(frozen=True)
class _Sentence(_Match):
    """One masked sentence of the table with its alternatives ((class, word or None = draw), ...)."""

    split: str | None = None
    alternatives: tuple = ()


def create_table_data(table: LabelledTable, cfg: DataConfig) -> pd.DataFrame:
    """The training table (columns/dtypes of `schema.TRAINING_SCHEMA`) for a labelled table under `cfg`."""
    cfg.validate()
    classes = cfg.class_map()
    sentences = _sentences(table, list(classes))
    selected = _select(sentences, cfg, random.Random(cfg.seed))
    ratios = cfg.ratios()
    if table.has_split:
        splits = {c: {s: [m for m in ms if m.split == s] for s in SPLITS} for c, ms in selected.items()}
        _check_given_splits(splits, ratios, table)
    else:
        rng = random.Random(cfg.seed)
        splits = {c: (_vocabulary_splits(c, ms, ratios, rng) if cfg.split_mode == "vocabulary"
                      else _random_splits(c, ms, ratios)) for c, ms in selected.items()}
    raw = {c: 0 for c in splits}  # labels of the (merged) classes are set by apply_merge / below
    df = _rows(splits, raw, cfg.split_mode == "vocabulary", random.Random(f"alternatives:{cfg.seed}"))
    if cfg.merge:
        return apply_merge(df, cfg.merge, cfg.labels())
    return df.assign(label=df["factual_class"].map(cfg.labels()).astype(df["label"].dtype))


def _sentences(table: LabelledTable, classes: list[str]) -> dict[str, list[_Sentence]]:
    """class -> its sentences in table order; a class without a row is an error."""
    groups: dict[tuple, list] = {}
    for r in table.rows:
        alts = groups.setdefault((r.factual_class, r.masked, r.factual, r.split), [])
        if r.alternative_class is not None and (r.alternative_class, r.alternative) not in alts:
            alts.append((r.alternative_class, r.alternative))
    out: dict[str, list[_Sentence]] = {c: [] for c in classes}
    for (cls, masked, factual, split), alts in groups.items():
        for b in (cls, *(b for b, _ in alts)):
            if b not in out:
                raise DataError(f"data.table {table.source} has class '{b}' that data.classes does not list "
                                f"({', '.join(classes)}); add it to data.classes or drop its rows")
        text = masked.replace(schema.MASK, factual)
        out[cls].append(_Sentence(text, masked, factual, 1, split, tuple(alts)))
    empty = [c for c, ms in out.items() if not ms]
    if empty:
        raise DataError(f"class '{empty[0]}' has no row in data.table {table.source} (column "
                        f"'{table.columns['factual_class']}'); add rows of it or remove it from data.classes")
    return out


def _check_given_splits(splits: dict, ratios: Mapping[str, float], table: LabelledTable) -> None:
    """Every split with a ratio > 0 needs rows of every class (after cap and balance)."""
    for c, by in splits.items():
        for s in SPLITS:
            if (ratios[s] > 0 or s == "train") and not by[s]:
                counts = ", ".join(f"{k} {len(v)}" for k, v in by.items())
                raise DataError(f"class '{c}' has no '{s}' row in data.table {table.source} (split column "
                                f"'{table.columns['split']}': {counts}); add {s} rows, or set "
                                f"data.{s}_ratio: 0 (and the other ratios to sum to 1)")


def _rows(splits: dict[str, dict[str, list[_Sentence]]], labels: Mapping[str, int],
          per_split_alternatives: bool, rng: random.Random) -> pd.DataFrame:
    """One row per (sentence, alternative); drawn alternatives in this fixed row order."""
    dist = alternative_distributions(splits, per_split_alternatives)
    rows = []
    for a, by_split in splits.items():
        for s in SPLITS:
            for m in by_split[s]:
                for b, word in m.alternatives or [(b, None) for b in splits if b != a]:
                    if word is None:
                        words, weights = dist(b, s)
                        if not words:
                            raise DataError(f"no '{s}' word of class '{b}' to draw an alternative from for "
                                            f"class '{a}'; add {s} rows of '{b}' or an alternative column")
                        word = rng.choices(words, weights=weights)[0]
                    rows.append((m.text, m.masked, m.factual, recase(word, m.factual), a, b, f"{a}->{b}",
                                 labels[a], s, m.word, m.n_masks))
    return training_frame(rows)
