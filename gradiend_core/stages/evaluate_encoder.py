"""evaluate-encoder: encode held-out and neutral rows from stored gradients; metrics and a plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..checkpoint import load_gradiend
from ..grad_store import GradientStore, assemble
from ..io import atomic_write_json
from ..metrics import encoder_metrics
from .common import info, out_path, pin_torch_threads, section, store_dir
from .extract_gradients import read_param_map
from .train_seed import EVAL_CHUNK, eval_label_sign

NAME = "evaluate-encoder"
VERSION = "1"


def config_slice(cfg) -> dict:
    return {"evaluate_encoder": section(cfg.evaluate_encoder)}


def store_columns(model_pmap, store_pmap) -> torch.Tensor:
    """Store columns holding the model's input dims (matched by stable base-global index)."""
    store_global = store_pmap.local_to_global()
    model_global = model_pmap.local_to_global()
    cols = torch.searchsorted(store_global, model_global)
    if (cols >= store_global.numel()).any() or not torch.equal(store_global[cols.clamp(max=store_global.numel() - 1)],
                                                               model_global):
        from ..errors import StoreError

        raise StoreError("the GRADIEND's input dims are not all in the gradient store; re-run pre-prune")
    return cols


def encode_rows(g, store: GradientStore, rows: pd.DataFrame, cols: torch.Tensor, source: str) -> np.ndarray:
    out = []
    full = cols.numel() == store.dim and bool((cols == torch.arange(store.dim)).all())
    for i in range(0, len(rows), EVAL_CHUNK):
        part = list(rows["store_row"].iloc[i:i + EVAL_CHUNK])
        neutral = torch.tensor((rows["kind"].iloc[i:i + EVAL_CHUNK] == "neutral").to_numpy())  # (n,) bool
        g_f, g_a = store.rows("factual", part), store.rows("alternative", part)
        x = assemble(source, g_f, g_a)
        x[neutral] = g_f[neutral]  # neutral rows have no alternative: encode their factual gradient
        x = x if full else x[:, cols]
        out.append(g.encode(x)[:, 0].double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pin_torch_threads(2)  # see common.pin_torch_threads
    e = conf["evaluate_encoder"]
    g = load_gradiend(out_path(inputs["model"]) / "model")
    rows = pd.read_parquet(out_path(inputs["extract"]) / "rows.parquet")
    store = GradientStore(store_dir(inputs["pre_prune"]))
    cols = store_columns(g.param_map, read_param_map(out_path(inputs["pre_prune"])))
    sel = rows[((rows["kind"] == "training") & (rows["split"] == e["split"]) & (rows["label"] != 0))
               | ((rows["kind"] == "neutral") & e["include_neutral"])]
    enc = encode_rows(g, store, sel, cols, g.source)
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
    from ..plots import plot_encoder_distributions

    plot_encoder_distributions(df, out / "encoder_distributions.png")
    return {"correlation": metrics["correlation"], "n_rows": int(len(df)), "split": e["split"]}
