"""decoder-grid: every (feature factor, learning rate) cell scored for class probability and LMS."""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import load_gradiend
from ..data.creation import read_dataset
from ..decoder_eval import DecoderGridConfig, decoder_rows, evaluate_decoder_grid
from ..io import atomic_write_json
from .common import info, load_prepared_model, out_path, section

NAME = "decoder-grid"
VERSION = "1"


def config_slice(cfg) -> dict:
    return {"decoder_grid": section(cfg.decoder_grid)}


def grid_config(d: dict) -> DecoderGridConfig:
    return DecoderGridConfig(learning_rates=d["learning_rates"], feature_factors=d["feature_factors"],
                             max_rows_per_class=d["max_rows_per_class"], lms_max_texts=d["lms_max_texts"],
                             batch_size=d["batch_size"], policy=d["policy"], lms_ratio=d["lms_ratio"], seed=d["seed"])


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    base = load_prepared_model(inputs["base"])
    g = load_gradiend(out_path(inputs["model"]) / "model", expected_digest=base.digest)
    training, neutral = read_dataset(out_path(inputs["data"]))
    classes = dict(info(inputs["data"])["classes"])  # ordered [name, words] pairs
    result = evaluate_decoder_grid(base.model, base.tokenizer, base.objective, g, decoder_rows(training),
                                   list(neutral["text"]), classes, grid_config(conf["decoder_grid"]),
                                   progress=lambda i, n: progress(i / n, f"grid cell {i}/{n}"))
    result.table.to_parquet(out / "grid.parquet", index=False)
    atomic_write_json(out / "grid.json", result.to_json())
    from ..plots import plot_probability_shifts

    plots = {}
    for c in result.feature_factors:
        plots[c] = f"probability_shifts_{c}.png"
        plot_probability_shifts(result, out / plots[c], c, result.summary.get(c))
    return {"summary": result.summary, "base_lms": result.base_lms, "n_cells": int(len(result.table)),
            "plots": plots}
