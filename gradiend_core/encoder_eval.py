"""Encoder evaluation: which stored rows a GRADIEND encodes, how they are labelled and grouped, and the
report over them.

Rows (every split, one table):
  training                 the pair's A->B and B->A rows; label +1 / -1 by the class of the encoded
                           token (with source=alternative the alternative's class, as in the reference)
  other_class              rows whose encoded token belongs to a class outside the pair (label 0)
  neutral_dataset          neutral sentences with one word masked (label 0)
  neutral_training_masked  held-out test sentences with another word masked (label 0)
The headline metrics (metrics.encoder_metrics) are those of the pair rows of one split (test by
default) with the neutral rows beside them, as before; other classes never enter them. The report
adds per-split blocks, the held-out words' rows apart, per target word statistics, per other class
and per neutral kind.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .gradient_rows import eval_label_sign, pair_rows
from .metrics import encoder_metrics, mean_by_label, pearson

NEUTRAL_KINDS = {"neutral": "neutral_dataset", "neutral_training_masked": "neutral_training_masked"}


def source_columns(source: str) -> tuple[str, str]:
    """(class column, word column) of the token whose gradient is encoded."""
    return ("alternative_class", "alternative") if source == "alternative" else ("factual_class", "factual")


def evaluation_rows(rows: pd.DataFrame, pair: tuple[str, str], source: str, include_neutral: bool) -> pd.DataFrame:
    """Every row to encode with its type, label, class and word of the encoded token (store order)."""
    cls, word = source_columns(source)
    pr = pair_rows(rows, None, pair)
    pr = pr.assign(type="training", label=pr["label"].astype(float) * eval_label_sign(source))
    training = rows[rows["kind"] == "training"]
    other = training[~training[cls].isin(pair)].assign(type="other_class", label=0.0)
    parts = [pr, other]
    if include_neutral:
        neutral = rows[rows["kind"].isin(NEUTRAL_KINDS)]
        parts.append(neutral.assign(type=neutral["kind"].map(NEUTRAL_KINDS), label=0.0))
    df = pd.concat(parts).sort_values("store_row", kind="stable")
    is_neutral = df["type"].str.startswith("neutral")
    return df.assign(source_class=np.where(is_neutral, "neutral", df[cls]),
                     source_word=np.where(is_neutral, df["factual"], df[word]).astype(str)).reset_index(drop=True)


NEUTRAL_GROUPS = {"neutral_dataset": "neutral (dataset)", "neutral_training_masked": "neutral (test sentences)"}


def group_names(df: pd.DataFrame) -> list[str]:
    """The plot group of each row: its class ("<class> (other)" outside the pair), or the neutral kind."""
    return [NEUTRAL_GROUPS.get(t, f"{c} (other)" if t == "other_class" else c)
            for t, c in zip(df["type"], df["source_class"])]


def group_order(df: pd.DataFrame) -> list[str]:
    """Groups left to right: the pair's +1 class, its -1 class, the other classes, the neutral kinds."""
    pair = df[df["type"] == "training"].sort_values("label", ascending=False, kind="stable")["group"]
    other = df.loc[df["type"] == "other_class", "group"]
    return list(dict.fromkeys([*pair, *sorted(set(other)), *NEUTRAL_GROUPS.values()]))


def encoder_report(df: pd.DataFrame, split: str) -> dict:
    """Headline metrics over the pair rows of `split` and the neutral rows (metrics.encoder_metrics),
    then `by_split`, `held_out_words`, `by_target_word`, `other_classes` and `neutral`."""
    head = df[((df["type"] == "training") & (df["split"] == split)) | df["type"].str.startswith("neutral")]
    out = encoder_metrics(head["encoded"].to_numpy(), head["label"].to_numpy(), types=list(head["type"]),
                          classes=group_names(head))
    pairs = df[df["type"] == "training"]
    out["split"] = split
    out["by_split"] = {s: _block(g) for s, g in _splits(pairs)}
    out["held_out_words"] = held_out_blocks(pairs)
    out["by_target_word"] = _word_stats(df[df["type"].isin(("training", "other_class"))])
    out["other_classes"] = {c: _stats(g["encoded"]) for c, g in df[df["type"] == "other_class"].groupby(
        "source_class", sort=False)}
    out["neutral"] = {t: _stats(g["encoded"]) for t, g in df[df["type"].str.startswith("neutral")].groupby(
        "type", sort=False)}
    return out


def held_out_blocks(pairs: pd.DataFrame) -> dict:
    """Per held-out split: the metrics of its rows whose encoded word never occurs in the train split
    (with split_mode vocabulary: all of them), apart from the rows of words seen in training."""
    seen = set(pairs.loc[pairs["split"] == "train", "source_word"].str.lower())
    out = {}
    for s, g in _splits(pairs):
        if s == "train":
            continue
        new = g[~g["source_word"].str.lower().isin(seen)]
        if len(new):
            out[s] = {**_block(new), "words": sorted(set(new["source_word"].str.lower()))}
    return out


def _splits(df: pd.DataFrame):
    order = {"train": 0, "validation": 1, "test": 2}
    return sorted(df.groupby("split"), key=lambda kv: order.get(kv[0], 3))


def _block(g: pd.DataFrame) -> dict:
    enc, lab = g["encoded"].to_numpy(), g["label"].to_numpy()
    acc = float((np.where(enc >= 0, 1, -1) == np.where(lab >= 0, 1, -1)).mean()) if len(g) else None
    return {"correlation": pearson(lab, enc), "accuracy": acc, "mean_by_class": mean_by_label(enc, lab),
            "n": int(len(g))}


def _stats(values: pd.Series) -> dict:
    v = values.to_numpy(dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def _word_stats(df: pd.DataFrame) -> dict:
    """class -> word (lowercased) -> mean, std, min, max, n of the encodings."""
    out: dict = {}
    for (c, w), g in df.assign(w=df["source_word"].str.lower()).groupby(["source_class", "w"], sort=True):
        out.setdefault(c, {})[w] = _stats(g["encoded"])
    return out
