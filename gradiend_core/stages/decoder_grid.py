"""decoder-grid: every (feature factor, learning rate) cell scored for class probability and LMS.

One task (`build`) or, with `runner.grid_parts` > 1, prepare -> N parts -> finalize
(gradiend_core.stages.grid_parts); both use `setup` and `write_outputs`, so they write the same files.
"""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import load_gradiend
from ..data.creation import read_dataset
from ..decoder_eval import DecoderGridConfig, GridResult, decoder_rows, evaluate_prepared, prepare_grid
from ..io import atomic_write_json
from .common import info, load_prepared_model, out_path, pin_torch_threads, section

NAME = "decoder-grid"
VERSION = "1"


def config_slice(cfg) -> dict:
    return {"decoder_grid": section(cfg.decoder_grid)}


def grid_config(d: dict) -> DecoderGridConfig:
    return DecoderGridConfig(learning_rates=d["learning_rates"], feature_factors=d["feature_factors"],
                             max_rows_per_class=d["max_rows_per_class"], lms_max_texts=d["lms_max_texts"],
                             batch_size=d["batch_size"], policy=d["policy"], lms_ratio=d["lms_ratio"], seed=d["seed"])


def setup(conf: dict, inputs: dict):
    """(base LM, selected GRADIEND, prepared grid) from the stage's inputs (local manifests)."""
    pin_torch_threads(2)  # the one-task build and every grid part alike; see common.pin_torch_threads
    base = load_prepared_model(inputs["base"])
    g = load_gradiend(out_path(inputs["model"]) / "model", expected_digest=base.digest)
    training, neutral = read_dataset(out_path(inputs["data"]))
    classes = dict(info(inputs["data"])["classes"])  # ordered [name, words] pairs
    grid = prepare_grid(base.tokenizer, base.objective, g, decoder_rows(training), list(neutral["text"]),
                        classes, grid_config(conf["decoder_grid"]))
    return base, g, grid


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    base, g, grid = setup(conf, inputs)
    result = evaluate_prepared(base.model, g, grid, progress=lambda i, n: progress(i / n, f"grid cell {i}/{n}"))
    return write_outputs(out, result)


def write_outputs(out: Path, result: GridResult) -> dict:
    """grid.parquet, grid.json and one probability-shift plot per class; returns the manifest info."""
    result.table.to_parquet(out / "grid.parquet", index=False)
    atomic_write_json(out / "grid.json", result.to_json())
    from ..plots import plot_probability_shifts

    plots = {}
    for c in result.feature_factors:
        plots[c] = f"probability_shifts_{c}.png"
        plot_probability_shifts(result, out / plots[c], c, result.summary.get(c))
    return {"summary": result.summary, "base_lms": result.base_lms, "n_cells": int(len(result.table)),
            "plots": plots}
