"""Encoder metrics checked against hand computations and numpy."""
import json

import numpy as np
import pytest
import torch

from gradiend_core.errors import DataError
from gradiend_core.metrics import encoder_metrics, label_key, pearson, ternary

# 8 rows: 6 training rows (4 target-class rows, 2 identity rows with label 0) + 2 neutral rows.
ENC = np.array([0.9, 0.4, -0.7, -0.2, 0.1, -0.6, 0.8, -0.3])
LAB = np.array([1, 1, -1, -1, 0, 0, 0, 0], dtype=float)
TYPES = ["training"] * 6 + ["neutral_dataset", "neutral_training_masked"]
SPLITS = ["train", "test", "train", "test", "train", "test", "test", "test"]
CLASSES = ["he", "he", "she", "she", "it", "it", "n", "n"]


@pytest.fixture(scope="module")
def m():
    return encoder_metrics(ENC, LAB, TYPES, SPLITS, CLASSES)


def test_pearson_matches_numpy_and_is_zero_when_undefined():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
    assert pearson([1.0], [2.0]) == 0.0
    assert pearson([1.0, np.nan], [0.0, 1.0]) == 0.0


def test_correlation_uses_training_rows_only(m):
    train = slice(0, 6)
    assert m["correlation"] == pytest.approx(np.corrcoef(LAB[train], ENC[train])[0, 1])
    assert m["training_only"]["correlation"] == m["correlation"]
    assert m["all_data"]["correlation"] == pytest.approx(np.corrcoef(LAB, ENC)[0, 1])
    assert m["target_classes_only"]["correlation"] == pytest.approx(np.corrcoef(LAB[:4], ENC[:4])[0, 1])
    assert (m["n"], m["all_data"]["n"], m["training_only"]["n"], m["target_classes_only"]["n"]) == (8, 8, 6, 4)


def test_accuracy_by_hand(m):
    # ternary predictions: 0.9->1, 0.4->0, -0.7->-1, -0.2->0, 0.1->0, -0.6->-1, 0.8->1, -0.3->0
    # all_data hits: row0, row2, row4, row7 -> 4/8; training_only hits: rows 0, 2, 4 -> 3/6
    assert m["all_data"]["accuracy"] == pytest.approx(4 / 8)
    assert m["training_only"]["accuracy"] == pytest.approx(3 / 6)
    # binary on target rows: 0.9->+1 ok, 0.4->+1 ok, -0.7->-1 ok, -0.2->-1 ok
    assert m["target_classes_only"]["accuracy"] == 1.0
    assert ternary(np.array([-0.5, 0.5, 0.49, -0.49])).tolist() == [-1, 1, 0, 0]


def test_binary_boundary_zero_counts_as_positive():
    out = encoder_metrics([0.0, -0.1, 0.0, 0.3], [1, -1, -1, 1])
    assert out["target_classes_only"]["accuracy"] == pytest.approx(3 / 4)


def test_class_statistics_over_non_neutral_rows(m):
    assert set(m["mean_by_class"]) == {"1", "-1", "0"}
    assert m["mean_by_class"]["1"] == pytest.approx(0.65)
    assert m["mean_by_class"]["-1"] == pytest.approx(-0.45)
    assert m["mean_by_class"]["0"] == pytest.approx(-0.25)  # identity rows only, neutrals excluded
    assert m["std_by_class"]["1"] == pytest.approx(np.std([0.9, 0.4], ddof=1))
    assert m["min_by_class"]["-1"] == -0.7 and m["max_by_class"]["-1"] == -0.2
    assert m["q1_by_class"]["1"] == pytest.approx(0.525) and m["q3_by_class"]["1"] == pytest.approx(0.775)
    assert m["n_by_class"] == {"1": 2, "-1": 2, "0": 2}


def test_type_class_name_and_split_blocks(m):
    assert m["mean_by_type"]["training"] == pytest.approx(ENC[:6].mean())
    assert m["mean_by_type"]["neutral_dataset"] == pytest.approx(0.8)
    assert m["abs_mean_by_type"]["training"] == pytest.approx(np.abs(ENC[:6]).mean())
    assert m["abs_mean_by_type"]["neutral_training_masked"] == pytest.approx(0.3)
    assert m["mean_by_class_name"] == pytest.approx({"he": 0.65, "she": -0.45, "it": -0.25, "n": 0.25})
    tr = m["by_split"]["train"]  # training rows 0, 2, 4
    assert tr["n"] == 3
    assert tr["correlation"] == pytest.approx(np.corrcoef([1, -1, 0], [0.9, -0.7, 0.1])[0, 1])
    assert tr["mean_by_class"] == pytest.approx({"1": 0.9, "-1": -0.7, "0": 0.1})
    assert set(m["by_split"]) == {"train", "test"}  # neutral-only rows do not create split blocks


def test_json_able_and_accepts_tensors(m):
    assert json.loads(json.dumps(m)) == m
    t = encoder_metrics(torch.tensor(ENC[:4]).unsqueeze(1), torch.tensor(LAB[:4]))
    assert t["correlation"] == pytest.approx(np.corrcoef(LAB[:4], ENC[:4])[0, 1])
    assert "by_split" not in t and "mean_by_class_name" not in t
    assert t["mean_by_type"] == pytest.approx({"training": ENC[:4].mean()})


def test_fail_fast_on_unusable_rows():
    with pytest.raises(DataError, match="at least 2 non-neutral"):
        encoder_metrics([0.1, 0.2], [1, -1], types=["training", "neutral_dataset"])
    with pytest.raises(DataError, match="both target classes"):
        encoder_metrics([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(DataError, match="one label per encoded row"):
        encoder_metrics([0.1, 0.2, 0.3], [1, -1])
    with pytest.raises(DataError, match="one split per row"):
        encoder_metrics([0.1, 0.2], [1, -1], splits=["train"])
    with pytest.raises(DataError, match="NaN"):
        encoder_metrics([0.1, np.nan], [1, -1])


def test_label_keys():
    assert [label_key(v) for v in (1.0, -1.0, 0.0, 0.5)] == ["1", "-1", "0", "0.5"]
