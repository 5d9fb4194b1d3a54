"""The decoder grid in pieces: `setup` (model, GRADIEND and the prepared, model-independent inputs),
`write_outputs`, and the grid split into parts: prepare, then N parts (fanned out by any task
runner, on any host), then finalize. decoder_grid.build is the one-task build of the same pieces.

Cells are independent: each part loads the base model and the selected GRADIEND, rebuilds the same
prepared inputs (seeded, model-independent, the same batches) and scores its cells with the same
per-cell function as the one-task build (`decoder_eval.cell_record`: apply in place, score, restore
bit-exactly). Finalize merges the records in canonical cell order and writes the one-task build's
files with `write_outputs`, so the published output is byte-identical, under the same key (the part
count is a runner setting, in no stage key). The steps pass small JSON-able plans and records (a few
floats per cell), never tensors.

The caller holds the output's lock (`store.lock`) from prepare to finalize, so concurrent runs score
the grid once; the steps themselves take no lock. Nothing is written before finalize, so a killed
run leaves nothing to resume: the next run scores the grid again.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..checkpoint import load_gradiend
from ..data.creation import read_dataset
from ..decoder_eval import (DecoderGridConfig, GridResult, base_record, decoder_rows, grid_result, prepare_grid,
                            score_cells)
from ..errors import StoreError
from ..store import Store
from ..io import atomic_write_json
from ..manifests import info, load_prepared_model, out_path
from .common import base_placement, contiguous_runs, pin_torch_threads
from .runner import key_for, stage_record


def grid_config(d: dict) -> DecoderGridConfig:
    return DecoderGridConfig(**d)


def setup(conf: dict, inputs: dict):
    """(base LM, selected GRADIEND, prepared grid) from the stage's inputs (local manifests)."""
    pin_torch_threads(2)  # the one-task build and every grid part alike; see common.pin_torch_threads
    base = load_prepared_model(inputs["base"], *base_placement(conf))
    g = load_gradiend(out_path(inputs["model"]) / "model", expected_digest=base.digest)
    training, neutral = read_dataset(out_path(inputs["data"]))
    classes = dict(info(inputs["data"])["classes"])  # ordered [name, words] pairs
    grid = prepare_grid(base.tokenizer, base.objective, g, decoder_rows(training, g.pair()), list(neutral["text"]),
                        classes, grid_config(conf["decoder_grid"]))
    return base, g, grid


def where(base) -> dict:
    """What a manifest's info records of where the base model ran: its device and dtype."""
    from ..devices import describe

    p = next(base.model.parameters())
    return {"device": describe(p.device), "model_dtype": str(p.dtype).removeprefix("torch.")}


def write_outputs(out: Path, result: GridResult) -> dict:
    """grid.parquet, grid.json and the per-item scores behind the intervals (lms_positions.parquet: every
    table row's score of every LMS position; row_probs.parquet: P(class) of every probability row);
    returns the manifest info."""
    result.table.to_parquet(out / "grid.parquet", index=False)
    lms, probs = result.scores.frames(result.classes, result.dataset_classes)
    lms.to_parquet(out / "lms_positions.parquet", index=False)
    probs.to_parquet(out / "row_probs.parquet", index=False)
    atomic_write_json(out / "grid.json", result.to_json())
    return {"summary": result.summary, "base_lms": result.base_lms, "n_cells": int(len(result.table)),
            "n_lms_positions": int(result.scores.lms_values.shape[1]), "n_rows": int(result.scores.row_probs.shape[1])}


def split_cells(n_cells: int, parts: int) -> list[list[int]]:
    """Cell indices as contiguous, near-equal runs in canonical order: min(parts, n_cells) runs, none
    empty, so the parts' records, concatenated in part order, are the one-task table's cells."""
    return contiguous_runs(list(range(n_cells)), parts)


def prepare(store: Store, stage, conf: dict, inputs: dict, parts: int, progress=None) -> dict:
    """The plan (cells, their split into parts, the base record), or {"cached": manifest}. `stage`:
    the decoder-grid declaration (its name and version make the output's key)."""
    name, version = stage.name, stage.version
    key = key_for(name, version, conf, inputs)
    if not store.problems(name, key):
        return {"key": key, "cached": {**store.load(name, key), "cached": True}}
    started = time.time()
    base, _, grid = setup(conf, _local(store, inputs))
    record = base_record(base.model, grid)
    if progress:
        progress(1.0, "base model scored")
    cells = [[ff, lr] for ff, lr in grid.cells]
    return {"stage": name, "version": version, "key": key, "started": started, "cells": cells,
            "parts": split_cells(len(cells), parts), "base": record, "layout": grid.layout(), "where": where(base)}


def part(store: Store, conf: dict, inputs: dict, plan: dict, index: int, progress=None) -> dict:
    """Score part `index`'s cells; returns their records (a few floats each) in canonical order."""
    t0 = time.perf_counter()
    indices = plan["parts"][index]
    base, g, grid = setup(conf, _local(store, inputs))
    if [[ff, lr] for ff, lr in grid.cells] != plan["cells"]:
        raise StoreError(f"{plan['stage']}/{plan['key']}: the inputs changed since prepare listed the cells; "
                         f"re-run the flow")
    cells = [tuple(plan["cells"][i]) for i in indices]
    report = (lambda i, n: progress(i / n, f"cell {i}/{n}")) if progress else None
    records = score_cells(base.model, g, grid, cells, report)
    return {"part": index, "cells": indices, "records": records, "seconds": round(time.perf_counter() - t0, 3)}


def finalize(store: Store, conf: dict, inputs: dict, plan: dict, parts: list[dict]) -> dict:
    """Merge the parts' records in canonical order, write the one-task build's files and publish them."""
    if "cached" in plan:
        return plan["cached"]
    key = plan["key"]
    result = grid_result([plan["base"], *_merged(plan, parts)], plan["layout"], grid_config(conf["decoder_grid"]))
    staging = store.staging(plan["stage"], key)
    try:
        info = {**write_outputs(staging, result), **plan.get("where", {})}
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    record = stage_record(plan["version"], conf, inputs, time.time() - plan["started"], info)
    record["parts"] = [{"part": p["part"], "cells": len(p["cells"]), "seconds": p["seconds"]} for p in parts]
    m = store.publish(plan["stage"], key, staging, record)
    m["cached"] = False
    return m


def _merged(plan: dict, parts: list[dict]) -> list[dict]:
    """Every cell's record in canonical order; a cell scored by no part or by two is an error."""
    by_cell: dict[int, dict] = {}
    for p in parts:
        for i, r in zip(p["cells"], p["records"], strict=True):
            if i in by_cell:
                raise StoreError(f"{plan['stage']}/{plan['key']}: grid cell {i} was scored by two parts; "
                                 f"re-run the flow")
            by_cell[i] = r
    missing = [i for i in range(len(plan["cells"])) if i not in by_cell]
    if missing:
        raise StoreError(f"{plan['stage']}/{plan['key']}: grid cells {missing[:5]} were not scored by any part; "
                         f"re-run the flow")
    return [by_cell[i] for i in range(len(plan["cells"]))]


def _local(store: Store, inputs: dict) -> dict:
    return {n: store.localize(m) for n, m in inputs.items()}  # a URL store: fetch them to this host
