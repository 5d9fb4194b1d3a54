"""Three classes, a pair of two (train.pair): pre-pruning, training, validation and the headline metrics
use exactly the pair's transitions; the third class appears in the encoder report only."""
import json

import pandas as pd
import yaml

from gradiend_core.store import open_store
from gradiend_core.testing import tiny_experiment


def test_three_classes_train_only_the_pairs_transitions(run_json, prefect_home, tiny_model_dir, tmp_path):
    exp = tiny_experiment(tiny_model_dir)
    exp["data"]["classes"] = {"IT": ["it"], "3SG": ["he", "she"], "3PL": ["they"]}  # the pair is not first
    exp["train"].update(pair=["3SG", "3PL"], max_seeds=1)
    (tmp_path / "three.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))  # keep the class order
    store = tmp_path / "store"
    s = run_json(tmp_path / "three.yaml", store)
    pair = {"3SG->3PL", "3PL->3SG"}
    m = {sid: open_store(store).load(st["stage"], st["key"])
         for sid, st in s["stages"].items()}
    rows = pd.read_parquet(f"{m['extract-gradients']['path']}/rows.parquet").set_index("store_row")
    transition = rows["factual_class"] + "->" + rows["alternative_class"]
    assert {"IT->3SG", "3SG->IT"} <= set(transition)  # every transition is stored ...
    sample = m["extract-gradients"]["info"]["pre_prune"]["sample_rows"]
    assert set(transition[sample]) == pair  # ... pre-pruning samples the pair's only
    trained = m["train-seed-0"]["info"]["rows"]
    assert set(trained["train"]) == pair and set(trained["validation"]) == pair
    assert m["train-seed-0"]["info"]["classes"] == ["3SG", "3PL"]

    metrics = json.loads((open_store(store).fetch("evaluate-encoder", s["stages"]["evaluate-encoder"]["key"])
                          / "metrics.json").read_text())
    enc = pd.read_parquet(f"{m['evaluate-encoder']['path']}/encoded.parquet")
    test_pairs = enc[(enc["type"] == "training") & (enc["split"] == "test")]
    assert set(enc.loc[enc["type"] == "training", "store_row"].map(transition)) == pair
    assert metrics["training_only"]["n"] == len(test_pairs)  # the headline: the pair's test rows only
    assert set(metrics["other_classes"]) == {"IT"} and metrics["other_classes"]["IT"]["n"] > 0
    assert (enc.loc[enc["type"] == "other_class", "source_class"] == "IT").all()
    grid = json.loads(open(f"{m['decoder-grid']['path']}/grid.json").read())
    assert set(grid["feature_factors"]) == {"3SG", "3PL"}
    probs = pd.read_parquet(f"{m['decoder-grid']['path']}/row_probs.parquet")
    scored = probs[probs["cell"] == 0]
    test = rows[(rows["kind"] == "training") & (rows["split"] == "test")]
    per_class = test[transition[test.index].isin(pair)].groupby("factual_class").size()  # one row per sentence
    assert scored.groupby("dataset_class").size().to_dict() == {c: min(n, 30) for c, n in per_class.items()}
    assert {"p_IT", "p_3SG", "p_3PL"} <= set(probs.columns)  # the third class's probability is still scored
    assert s["metrics"]["target_class"] == "3SG"
