"""evaluate-encoder: encode the stored rows of every split (the pair's, the other classes', neutral ones)
with the selected GRADIEND; the headline metrics and the wider report (gradiend_core.encoder_eval)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..checkpoint import load_gradiend
from ..grad_store import GradientStore
from ..encoder_eval import encoder_report, evaluation_rows, group_names
from ..gradient_rows import encode_stored, store_columns
from ..io import atomic_write_json
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
    table = evaluation_rows(rows, g.pair(), g.source, e["include_neutral"])
    progress(0.1, f"encoding {len(table)} rows")
    table["encoded"] = encode_stored(g, store, table, cols, g.source)  # (n,)
    table["group"] = group_names(table)
    metrics = encoder_report(table, e["split"])
    keep = ["store_row", "encoded", "label", "type", "group", "split", "source_class", "source_word", "masked",
            "factual", "alternative"]
    table[keep].to_parquet(out / "encoded.parquet", index=False)
    atomic_write_json(out / "metrics.json", metrics)
    return {"correlation": metrics["correlation"], "n_rows": int(len(table)), "split": e["split"]}


# version 2: no plot in the output (the report draws it); 3: every split, other classes, neutral kinds, words
STAGE = Stage(name="evaluate-encoder", version="3", sections=("evaluate_encoder",), build=build,
              inputs=(needs("model", "post-prune", "select-seed"), needs("extract", "extract-gradients"),
                      needs("pre_prune", "pre-prune")),
              report=Report(artifacts=report.artifacts, draw=report.draw, code=report.CODE))
