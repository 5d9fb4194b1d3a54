"""pre-prune: records the pre-pruning selection for the UI and hands the gradient store on.

The selection itself runs inside extract-gradients, BEFORE the bulk extraction (pruning.sample_keep):
the sampled rows' full gradients are computed from the model, the top dims chosen, and every row's
gradient is then stored only at the kept dims. That is the reference's order (it prunes, then
computes training gradients at the kept dims) and it is what makes large selections affordable: on
the default MiniLM with word embeddings a row's full factual+alternative gradient is 90 MB in
float16, 30 GB for 330 rows, against 9 MB at the default top 10%. The price: changing pre_prune
re-extracts. Training and evaluation read extract-gradients' (pruned, or full when pruning is off)
store through this stage's manifest.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..param_map import load_param_map, save_param_map
from ..pruning import KEEP_FILE
from ..reports import pre_prune as report
from ..manifests import info, out_path
from .declaration import Report, Stage, needs


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    enabled = conf["pre_prune"]["enabled"]
    ext = inputs["extract"]
    pmap = load_param_map(out_path(ext))
    save_param_map(out, pmap)
    i = info(ext)
    common = {"store_stage": ext["stage"], "store_key": ext["key"], "dim": pmap.input_dim}
    if not enabled:
        return {**common, "pruned": False}
    pruned = i.get("pre_prune") or {}
    shutil.copyfile(out_path(ext) / KEEP_FILE, out / KEEP_FILE)  # the selection, next to its summary
    return {**common, "pruned": True, "unpruned_dim": pruned.get("unpruned_dim"),
            "sample_rows": pruned.get("sample_rows"), "kept_per_param": pruned.get("kept_per_param")}


STAGE = Stage(name="pre-prune", version="2", sections=("pre_prune",), build=build,
              inputs=(needs("extract", "extract-gradients"),), report=Report(artifacts=report.artifacts))
