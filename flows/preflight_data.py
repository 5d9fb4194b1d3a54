"""What the later stages need of the data, checked before the first stage: from create-data's manifest
when it is cached, else from a dry run of it (the corpus is read, nothing is written).

Each check here would otherwise fail (or silently do nothing) only after extraction and training:
the split evaluate-encoder reads, the neutral texts the decoder grid's LMS is scored on, the full base
batches training draws, and target words that match nothing.
"""
from __future__ import annotations

import sys

from gradiend_core.errors import ConfigError


def check_data(cfg, store, steps, grid: bool = True) -> int:
    """create-data's row count; raises ConfigError (one line, naming the fix) on data the run cannot use,
    and prints a warning line for each target word no sentence holds. `grid`: the decoder grid runs."""
    data = steps["create-data"]
    m = store.manifest(data.stage, data.key) if store.status(data.stage, data.key) == "cached" else None
    summary = m["info"]["summary"] if m is not None else _dry_run(cfg)
    pair = cfg.pair()
    _check_eval_split(cfg, summary, pair)
    _check_batches(cfg, summary, pair)
    if grid and summary.get("neutral", 1) == 0:
        raise ConfigError(f"no neutral text is left for the decoder grid's LMS (data.neutral_max: {cfg.data.neutral_max}; "
                          f"texts holding a target word or a data.neutral_exclude word are dropped); set "
                          f"data.neutral_max >= 1 (or null: all) or give data.neutral_corpus texts without them")
    return int(summary["n_rows"])


def _dry_run(cfg) -> dict:
    """create-data's summary (row counts per class and split, neutral count), without writing anything;
    warns about target words that match no sentence."""
    from gradiend_core.data.corpus import corpus_texts, neutral_texts, training_data
    from gradiend_core.data.creation import (create_neutral_data, create_training_data, neutral_exclude_words,
                                             summarize)
    from gradiend_core.data.documents import segments

    d = cfg.data.resolved()
    if d.table is None:
        texts = corpus_texts(cfg.data)
        training = create_training_data(texts, d)
        warn_unmatched(segments(texts, d.preprocess), d.class_map())
    else:  # a table's target words are its own rows' words
        training = training_data(cfg.data)
    neutral = create_neutral_data(neutral_texts(cfg.data), neutral_exclude_words(d), d.neutral_max, d.seed,
                                  d.preprocess)
    return summarize(training, neutral)


def warn_unmatched(sentences, classes: dict) -> None:
    from gradiend_core.data.creation import unmatched_words

    for cls, word in unmatched_words(sentences, classes):
        print(f"warning: target word '{word}' of class '{cls}' occurs in no sentence as a whole word "
              f"(of {len(sentences)}; matching is whole-word, case-insensitive), so it adds no rows: check its "
              f"spelling or remove it from data.classes", file=sys.stderr)


def _check_eval_split(cfg, summary: dict, pair) -> None:
    """The split evaluate-encoder reads must hold rows of the GRADIEND's two classes."""
    split = cfg.evaluate_encoder.split
    for cls in pair:
        if not summary["class_splits"].get(cls, {}).get(split):
            raise ConfigError(f"evaluate_encoder.split '{split}' has no row of class '{cls}' (rows per split: "
                              f"{summary['class_splits'].get(cls, {})}); choose another split or give it rows "
                              f"(data.{split}_ratio, or the table's split column)")


def _check_batches(cfg, summary: dict, pair) -> None:
    """Training draws full base batches of one class's train rows: each class of the pair needs one. (A
    class's train rows include its rows towards classes outside the pair: necessary, exact for two classes.)"""
    bbs = cfg.train.base_batch_size
    for cls in pair:
        n = summary["class_splits"].get(cls, {}).get("train", 0)
        if n < bbs:
            raise ConfigError(f"train.base_batch_size {bbs} is more than the {n} train rows of class '{cls}'; "
                              f"lower train.base_batch_size or add data (data.max_per_class, data.train_ratio)")
