"""post-prune (optional): keep the top-k GRADIEND input dims by weight importance of the selected model."""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import load_gradiend, save_gradiend
from ..reports import post_prune as report
from ..manifests import out_path
from .common import pin_torch_threads
from .declaration import Report, Stage, needs


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pin_torch_threads(1)  # see common.pin_torch_threads
    p = conf["post_prune"]
    g = load_gradiend(out_path(inputs["model"]) / "model")
    pruned = g.prune(topk=p["topk"], part=p["part"])
    save_gradiend(pruned, out / "model")
    return {"input_dim_before": g.model.input_dim, "input_dim": pruned.model.input_dim}


STAGE = Stage(name="post-prune", version="1", sections=("post_prune",), build=build,
              inputs=(needs("model", "select-seed"),), enabled=lambda cfg: cfg.post_prune.enabled,
              report=Report(artifacts=report.artifacts))
