"""decoder-grid: every (feature factor, learning rate) cell scored for class probability and LMS.

One task (`build`) or, with `runner.grid_parts` > 1, prepare -> N parts -> finalize; both are made
of the same pieces (grid_parts.setup, decoder_eval's per-cell scoring, grid_parts.write_outputs), so
they write the same files under the same key.
"""
from __future__ import annotations

from pathlib import Path

from ..decoder_eval import evaluate_prepared
from ..reports import decoder_grid as report
from . import grid_parts
from .common import placement, section
from .declaration import Report, Split, Stage, needs


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    base, g, grid = grid_parts.setup(conf, inputs)
    result = evaluate_prepared(base.model, g, grid, progress=lambda i, n: progress(i / n, f"grid cell {i}/{n}"))
    return {**grid_parts.write_outputs(out, result), **grid_parts.where(base)}


# version 2: no plots in the output (the report draws them)
# version 3: per-item scores (lms_positions.parquet, row_probs.parquet) and paired bootstrap intervals
def config_slice(cfg) -> dict:
    """The decoder_grid section, model.dtype (when not float32) and model.device (not hashed)."""
    return {"decoder_grid": section(cfg.decoder_grid), **placement(cfg)}


STAGE = Stage(name="decoder-grid", version="3", sections=("decoder_grid",), build=build, conf=config_slice,
              inputs=(needs("model", "post-prune", "select-seed"), needs("base", "prepare-model"),
                      needs("data", "create-data")),
              split=Split(grid_parts.prepare, grid_parts.part, grid_parts.finalize,
                          count=lambda cfg: cfg.runner.grid_parts, units="parts"),
              report=Report(artifacts=report.artifacts, draw=report.draw, code=report.CODE, extra=report.EXTRA))
