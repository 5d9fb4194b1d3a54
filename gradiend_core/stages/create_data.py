"""create-data: labelled masked sentences (train/validation/test) and neutral sentences, as parquet.

The rows come from a corpus (or a builtin) whose target words are found here, or from the user's labelled
table (data.table); either way the files have the same schema (data/schema.py).
"""
from __future__ import annotations

from pathlib import Path

from ..data.corpus import class_map, corpus_identity, neutral_texts, training_data
from ..data.creation import create_neutral_data, neutral_exclude_words, write_dataset
from ..data.documents import PreprocessConfig
from ..reports import create_data as report
from .common import section
from .declaration import Report, Stage

PATHS = ("corpus", "neutral_corpus", "table")  # file locations: not hashed (corpus_identity holds their digests)
# settings added after version 3, left out of the slice at their defaults: the keys of the experiments
# that do not use them stay what they were (their rows are byte-identical)
OPTIONAL = {"table_columns": None, "preprocess": PreprocessConfig(), "merge": None, "identity_rows": False}


def config_slice(cfg) -> dict:
    """The data section (a table is read and checked here, through class_map: before any stage runs)."""
    s = {k: v for k, v in section(cfg.data).items()
         if k not in PATHS and not (k in OPTIONAL and getattr(cfg.data, k) == OPTIONAL[k])}
    # ordered pairs: manifests and keys are written with sorted JSON keys, and the first class is label +1
    s["classes"] = [[name, words] for name, words in class_map(cfg.data).items()]
    return {"data": s, "corpus": corpus_identity(cfg.data)}


def paths(cfg) -> dict:
    return {k: getattr(cfg.data, k) for k in PATHS}


def data_section(conf: dict, paths: dict):
    """The DataSection a build reads (classes resolved by the slice, paths from this host)."""
    from ..experiment import DataSection

    d = dict(conf["data"])
    d["classes"] = dict(d["classes"])
    d["preprocess"] = PreprocessConfig(**d.get("preprocess", {}))
    return DataSection(**{**d, **paths}).validate()


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    d = data_section(conf, paths)
    progress(0.1, "reading the labelled table" if d.table else "matching target words")
    training = training_data(d)
    neutral = create_neutral_data(neutral_texts(d), neutral_exclude_words(d), d.neutral_max, d.seed, d.preprocess)
    summary = write_dataset(out, training, neutral)
    # the classes the later stages see: after data.merge (a merged class's words are its raw classes' words)
    return {"summary": summary, "classes": list(d.merged_class_map().items()), "labels": d.labels()}


# version 2: classes as ordered [name, words] pairs; 3: the corpus paths out of the key (digests stay)
STAGE = Stage(name="create-data", version="3", sections=("data",), build=build, conf=config_slice, paths=paths,
              report=Report(artifacts=report.artifacts, extra=report.EXTRA))
