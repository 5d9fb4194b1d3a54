"""The whole pipeline on a tiny model from the user's own labelled table (the reference's merged column
names) and a neutral text file; the table's identity in the keys is its content, not its path."""
import shutil

import pandas as pd
import yaml

from gradiend_core.testing import tiny_experiment


def labelled_table(path):
    """Masked sentences labelled elsewhere: here, the builtin's, written with the reference's column names."""
    from gradiend_core.data.builtin import pronoun_number_texts
    from gradiend_core.data.creation import DataConfig, create_training_data

    cfg = DataConfig(classes={"3SG": ["he", "she", "it"], "3PL": ["they"]}, max_per_class=40)
    df = create_training_data(pronoun_number_texts(), cfg)
    df = df[df.n_masks == 1][["masked", "factual", "factual_class", "split"]]
    df = df.rename(columns={"factual": "label", "factual_class": "label_class"})
    df["split"] = df.split.replace({"validation": "val"})
    df.to_parquet(path, index=False)
    return df


def test_pipeline_from_a_labelled_table(tmp_path, run_json, prefect_home, tiny_model_dir):
    from gradiend_core.data.builtin import neutral_texts

    table = labelled_table(tmp_path / "labelled.parquet")
    (tmp_path / "neutral.txt").write_text("\n".join(neutral_texts()) + "\n")
    exp = tiny_experiment(tiny_model_dir, name="own-table")
    exp["data"] = {"builtin": None, "table": "labelled.parquet", "neutral_corpus": "neutral.txt",
                   "classes": {"3SG": [], "3PL": []}, "max_per_class": 30, "neutral_max": 12}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))  # class order is data
    store = tmp_path / "store"

    cold = run_json(tmp_path / "exp.yaml", store)
    assert all(not st["cached"] for st in cold["stages"].values()) and "rewrite-3SG-strengthen" in cold["stages"]
    assert -1.0 <= cold["metrics"]["encoder_correlation"] <= 1.0
    out = store / "create-data" / cold["stages"]["create-data"]["key"]
    rows = pd.read_parquet(out / "training.parquet")
    assert set(rows.masked) <= set(table.masked) and set(rows.split) == {"train", "validation", "test"}
    assert rows.groupby("factual_class").label.first().to_dict() == {"3SG": 1, "3PL": -1}

    # the same content elsewhere: every output is reused
    (tmp_path / "moved").mkdir()
    shutil.copy(tmp_path / "labelled.parquet", tmp_path / "moved" / "t.parquet")
    warm = run_json(tmp_path / "exp.yaml", store, f"data.table={tmp_path / 'moved' / 't.parquet'}")
    assert all(st["cached"] for st in warm["stages"].values())
