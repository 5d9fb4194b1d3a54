"""decoder-grid split into parts: prepare, then N parts (fanned out by any task runner, on any host),
then finalize.

Cells are independent: each part loads the base model and the selected GRADIEND, rebuilds the same
prepared inputs (seeded, model-independent, the same batches) and scores its cells with the same
per-cell function as the one-task build (`decoder_eval.cell_record`: apply in place, score, restore
bit-exactly). Finalize merges the records in canonical cell order and writes the one-task build's
files with its code (`decoder_grid.write_outputs`), so the published output is byte-identical, under
the same key (the part count is a runner setting, in no stage key). The steps pass small JSON-able
plans and records (a few floats per cell), never tensors.

The caller holds the output's lock (`store.lock`) from prepare to finalize, so concurrent runs score
the grid once; the steps themselves take no lock. Nothing is written before finalize, so a killed
run leaves nothing to resume: the next run scores the grid again.
"""
from __future__ import annotations

import shutil
import time

from ..decoder_eval import base_record, grid_result, score_cells
from ..errors import StoreError
from ..store import Store
from . import decoder_grid as dg
from .common import contiguous_runs
from .runner import key_for, stage_record

NAME = dg.NAME


def output_key(conf: dict, inputs: dict[str, dict]) -> str:
    return key_for(NAME, dg.VERSION, conf, inputs)


def split_cells(n_cells: int, parts: int) -> list[list[int]]:
    """Cell indices as contiguous, near-equal runs in canonical order: min(parts, n_cells) runs, none
    empty, so the parts' records, concatenated in part order, are the one-task table's cells."""
    return contiguous_runs(list(range(n_cells)), parts)


def prepare(store: Store, conf: dict, inputs: dict, parts: int, progress=None) -> dict:
    """The plan (cells, their split into parts, the base record), or {"cached": manifest}."""
    key = output_key(conf, inputs)
    if not store.problems(NAME, key):
        return {"key": key, "cached": {**store.load(NAME, key), "cached": True}}
    started = time.time()
    base, _, grid = dg.setup(conf, _local(store, inputs))
    record = base_record(base.model, grid)
    if progress:
        progress(1.0, "base model scored")
    cells = [[ff, lr] for ff, lr in grid.cells]
    return {"key": key, "started": started, "cells": cells, "parts": split_cells(len(cells), parts),
            "base": record, "layout": grid.layout()}


def part(store: Store, conf: dict, inputs: dict, plan: dict, index: int, progress=None) -> dict:
    """Score part `index`'s cells; returns their records (a few floats each) in canonical order."""
    t0 = time.perf_counter()
    indices = plan["parts"][index]
    base, g, grid = dg.setup(conf, _local(store, inputs))
    if [[ff, lr] for ff, lr in grid.cells] != plan["cells"]:
        raise StoreError(f"{NAME}/{plan['key']}: the inputs changed since prepare listed the cells; re-run the flow")
    cells = [tuple(plan["cells"][i]) for i in indices]
    report = (lambda i, n: progress(i / n, f"cell {i}/{n}")) if progress else None
    records = score_cells(base.model, g, grid, cells, report)
    return {"part": index, "cells": indices, "records": records, "seconds": round(time.perf_counter() - t0, 3)}


def finalize(store: Store, conf: dict, inputs: dict, plan: dict, parts: list[dict]) -> dict:
    """Merge the parts' records in canonical order, write the one-task build's files and publish them."""
    if "cached" in plan:
        return plan["cached"]
    key = plan["key"]
    result = grid_result([plan["base"], *_merged(plan, parts)], plan["layout"], dg.grid_config(conf["decoder_grid"]))
    staging = store.staging(NAME, key)
    try:
        info = dg.write_outputs(staging, result)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    record = stage_record(dg.VERSION, conf, inputs, time.time() - plan["started"], info)
    record["parts"] = [{"part": p["part"], "cells": len(p["cells"]), "seconds": p["seconds"]} for p in parts]
    m = store.publish(NAME, key, staging, record)
    m["cached"] = False
    return m


def _merged(plan: dict, parts: list[dict]) -> list[dict]:
    """Every cell's record in canonical order; a cell scored by no part or by two is an error."""
    by_cell: dict[int, dict] = {}
    for p in parts:
        for i, r in zip(p["cells"], p["records"], strict=True):
            if i in by_cell:
                raise StoreError(f"{NAME}/{plan['key']}: grid cell {i} was scored by two parts; re-run the flow")
            by_cell[i] = r
    missing = [i for i in range(len(plan["cells"])) if i not in by_cell]
    if missing:
        raise StoreError(f"{NAME}/{plan['key']}: grid cells {missing[:5]} were not scored by any part; "
                         f"re-run the flow")
    return [by_cell[i] for i in range(len(plan["cells"]))]


def _local(store: Store, inputs: dict) -> dict:
    return {n: store.localize(m) for n, m in inputs.items()}  # a URL store: fetch them to this host
