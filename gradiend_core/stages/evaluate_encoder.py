"""evaluate-encoder: encode held-out and neutral rows from stored gradients; metrics and the encodings."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..checkpoint import load_gradiend
from ..grad_store import GradientStore
from ..gradient_rows import encode_stored, eval_label_sign, store_columns
from ..io import atomic_write_json
from ..metrics import encoder_metrics
from ..param_map import load_param_map
from ..reports import evaluate_encoder as report
from ..manifests import out_path, store_dir
from .common import pin_torch_threads
from .declaration import Report, Stage, needs


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pin_torch_threads(2)  # see common.pin_torch_threads
    e = conf["evaluate_encoder"]
    g = load_gradiend(out_path(inputs["model"]) / "model")
    rows = pd.read_parquet(out_path(inputs["extract"]) / "rows.parquet")
    store = GradientStore(store_dir(inputs["pre_prune"]))
    cols = store_columns(g.param_map, load_param_map(out_path(inputs["pre_prune"])))
    sel = rows[((rows["kind"] == "training") & (rows["split"] == e["split"]) & (rows["label"] != 0))
               | ((rows["kind"] == "neutral") & e["include_neutral"])]
    enc = encode_stored(g, store, sel, cols, g.source)  # (n,)
    training = (sel["kind"] == "training").to_numpy()
    labels = np.where(training, sel["label"].to_numpy() * eval_label_sign(g.source), 0.0)
    types = np.where(training, "training", "neutral_dataset").tolist()
    # with source=alternative the encoded token belongs to the alternative class
    src_class = sel["alternative_class"] if g.source == "alternative" else sel["factual_class"]
    groups = np.where(training, src_class, "neutral (dataset)").tolist()
    metrics = encoder_metrics(enc, labels, types=types, splits=None, classes=groups)
    df = pd.DataFrame({"store_row": sel["store_row"].to_numpy(), "encoded": enc, "label": labels, "type": types,
                       "group": groups, "split": sel["split"].to_numpy(), "masked": sel["masked"].to_numpy(),
                       "factual": sel["factual"].to_numpy()})
    df.to_parquet(out / "encoded.parquet", index=False)
    atomic_write_json(out / "metrics.json", metrics)
    return {"correlation": metrics["correlation"], "n_rows": int(len(df)), "split": e["split"]}


# version 2: no plot in the output (the report draws it)
STAGE = Stage(name="evaluate-encoder", version="2", sections=("evaluate_encoder",), build=build,
              inputs=(needs("model", "post-prune", "select-seed"), needs("extract", "extract-gradients"),
                      needs("pre_prune", "pre-prune")),
              report=Report(artifacts=report.artifacts, draw=report.draw, code=report.CODE))
