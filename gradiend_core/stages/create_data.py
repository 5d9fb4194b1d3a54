"""create-data: labelled masked sentences (train/validation/test) and neutral sentences, as parquet."""
from __future__ import annotations

from pathlib import Path

from ..data.creation import DataConfig, create_neutral_data, create_training_data, neutral_exclude_words, write_dataset
from .common import class_map, corpus_identity, corpus_texts, neutral_texts, section

NAME = "create-data"
VERSION = "2"  # 2: classes as ordered [name, words] pairs


def data_config(d) -> DataConfig:
    return DataConfig(classes=class_map(d), min_left_context_words=d.min_left_context_words,
                      max_per_class=d.max_per_class, balance=d.balance, train_ratio=d.train_ratio,
                      validation_ratio=d.validation_ratio, test_ratio=d.test_ratio, split_mode=d.split_mode,
                      seed=d.seed, neutral_max=d.neutral_max, neutral_exclude=list(d.neutral_exclude))


def config_slice(cfg) -> dict:
    data_config(cfg.data).validate()  # bad classes / ratios fail before any stage runs
    s = section(cfg.data)
    # ordered pairs: manifests and keys are written with sorted JSON keys, and the first class is label +1
    s["classes"] = [[name, words] for name, words in class_map(cfg.data).items()]
    return {"data": s, "corpus": corpus_identity(cfg.data)}


def paths(cfg) -> dict:
    return {"corpus": cfg.data.corpus, "neutral_corpus": cfg.data.neutral_corpus}


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    from ..experiment import DataSection

    d = DataSection(**{**conf["data"], "classes": dict(conf["data"]["classes"]), "corpus": paths.get("corpus"),
                       "neutral_corpus": paths.get("neutral_corpus")})
    dc = data_config(d).validate()
    progress(0.1, "matching target words")
    training = create_training_data(corpus_texts(d), dc)
    neutral = create_neutral_data(neutral_texts(d), neutral_exclude_words(dc), dc.neutral_max, dc.seed)
    summary = write_dataset(out, training, neutral)
    return {"summary": summary, "classes": list(dc.class_map().items()), "labels": dc.labels()}
