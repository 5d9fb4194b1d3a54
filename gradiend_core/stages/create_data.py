"""create-data: labelled masked sentences (train/validation/test) and neutral sentences, as parquet."""
from __future__ import annotations

from pathlib import Path

from ..data.corpus import class_map, corpus_identity, corpus_texts, neutral_texts
from ..data.creation import create_neutral_data, create_training_data, neutral_exclude_words, write_dataset
from ..reports import create_data as report
from .common import section
from .declaration import Report, Stage

PATHS = ("corpus", "neutral_corpus")  # file locations: not hashed (corpus_identity holds their digests)


def config_slice(cfg) -> dict:
    s = {k: v for k, v in section(cfg.data).items() if k not in PATHS}
    # ordered pairs: manifests and keys are written with sorted JSON keys, and the first class is label +1
    s["classes"] = [[name, words] for name, words in class_map(cfg.data).items()]
    return {"data": s, "corpus": corpus_identity(cfg.data)}


def paths(cfg) -> dict:
    return {k: getattr(cfg.data, k) for k in PATHS}


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    from ..experiment import DataSection

    d = DataSection(**{**conf["data"], "classes": dict(conf["data"]["classes"]), **paths}).validate()
    progress(0.1, "matching target words")
    training = create_training_data(corpus_texts(d), d)
    neutral = create_neutral_data(neutral_texts(d), neutral_exclude_words(d), d.neutral_max, d.seed)
    summary = write_dataset(out, training, neutral)
    return {"summary": summary, "classes": list(d.class_map().items()), "labels": d.labels()}


# version 2: classes as ordered [name, words] pairs; 3: the corpus paths out of the key (digests stay)
STAGE = Stage(name="create-data", version="3", sections=("data",), build=build, conf=config_slice, paths=paths,
              report=Report(artifacts=report.artifacts, extra=report.EXTRA))
