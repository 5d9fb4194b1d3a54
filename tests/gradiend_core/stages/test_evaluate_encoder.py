"""evaluate-encoder: the pair's rows of every split, the neutral rows (both kinds), and a report whose
headline is recomputed from the stored encodings."""
import numpy as np
import pandas as pd
import pytest

from gradiend_core.io import read_json
from gradiend_core.metrics import pearson


def test_every_split_and_both_neutral_kinds_are_encoded(tiny_run):
    out = tiny_run.out("evaluate-encoder")
    enc = pd.read_parquet(out / "encoded.parquet")
    rows = pd.read_parquet(tiny_run.out("extract-gradients") / "rows.parquet")
    assert len(enc) == len(rows)  # two classes: every stored row is a pair row or a neutral one
    assert set(enc["type"]) == {"training", "neutral_dataset", "neutral_training_masked"}
    assert set(enc.loc[enc["type"] == "training", "split"]) == {"train", "validation", "test"}
    masked = enc[enc["type"] == "neutral_training_masked"]
    test_texts = set(rows.loc[(rows["kind"] == "training") & (rows["split"] == "test"), "masked"])
    assert len(masked) and all("[MASK]" in m for m in masked["masked"]) and not set(masked["masked"]) & test_texts
    assert np.isfinite(enc["encoded"]).all()


def test_headline_and_per_split_metrics_come_from_the_stored_encodings(tiny_run):
    out = tiny_run.out("evaluate-encoder")
    enc = pd.read_parquet(out / "encoded.parquet")
    metrics = read_json(out / "metrics.json")
    pairs = enc[enc["type"] == "training"]
    test = pairs[pairs["split"] == "test"]
    assert metrics["correlation"] == pytest.approx(pearson(test["label"], test["encoded"]), abs=1e-12)
    for split, block in metrics["by_split"].items():
        g = pairs[pairs["split"] == split]
        assert block["n"] == len(g) and block["correlation"] == pytest.approx(pearson(g["label"], g["encoded"]))
    words = metrics["by_target_word"]
    assert set(words) == set(pairs["source_class"]) and sum(w["n"] for ws in words.values() for w in ws.values()) \
        == len(pairs)
    assert set(metrics["neutral"]) == {"neutral_dataset", "neutral_training_masked"}
    assert metrics["other_classes"] == {}
    report = tiny_run.report("evaluate-encoder")
    assert {p.name for p in report.glob("*.png")} == {"encoder_distributions.png", "encoder_by_split.png",
                                                      "encoder_by_target_word.png"}
