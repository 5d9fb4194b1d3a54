"""evaluate-encoder: the encodings of the test and neutral rows, and metrics recomputed from them."""
import numpy as np
import pandas as pd
import pytest

from gradiend_core.io import read_json
from gradiend_core.metrics import pearson


def test_metrics_are_those_of_the_stored_encodings(tiny_run):
    out = tiny_run.out("evaluate-encoder")
    enc = pd.read_parquet(out / "encoded.parquet")
    rows = pd.read_parquet(tiny_run.out("extract-gradients") / "rows.parquet")
    test = rows[(rows["kind"] == "training") & (rows["split"] == "test") & (rows["label"] != 0)]
    assert len(enc) == len(test) + int((rows["kind"] == "neutral").sum())
    metrics = read_json(out / "metrics.json")
    training = enc[enc["type"] == "training"]
    assert metrics["training_only"]["correlation"] == pytest.approx(
        pearson(training["label"].to_numpy(), training["encoded"].to_numpy()), abs=1e-9)
    assert np.isfinite(enc["encoded"]).all()
    assert (tiny_run.report("evaluate-encoder") / "encoder_distributions.png").is_file()
