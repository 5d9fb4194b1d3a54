"""select-seed: convergence-aware choice among the trained seeds; the report keeps every candidate."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..io import atomic_write_json, read_json
from ..reports import select_seed as report
from ..seeds import SeedSelectionConfig, select_seed
from ..manifests import out_path
from .declaration import Report, Stage, needs


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    seeds = {name: m for name, m in inputs.items() if name.startswith("seed_")}
    runs = [{"seed": int(m["info"]["seed"]), "stats": read_json(out_path(m) / "stats.json")} for m in seeds.values()]
    sr = select_seed(runs, SeedSelectionConfig(**conf["select"]))
    winner = next(m for m in seeds.values() if int(m["info"]["seed"]) == sr["best_seed"])
    for r in sr["runs"]:
        r["train_key"] = next(m["key"] for m in seeds.values() if int(m["info"]["seed"]) == r["seed"])
    shutil.copytree(out_path(winner) / "model", out / "model")
    shutil.copy2(out_path(winner) / "stats.json", out / "stats.json")  # the winner's curve, for the report
    atomic_write_json(out / "seed_report.json", sr)
    return {"best_seed": sr["best_seed"], "strategy": sr["strategy"], "convergent_count": sr["convergent_count"],
            "n_seeds": len(runs), "classes": winner["info"].get("classes")}


# version 2: the winner's stats.json instead of its plot (plots are the report's)
STAGE = Stage(name="select-seed", version="2", sections=("select",), build=build,
              inputs=(needs("seed", "train-seed", every=True),),
              report=Report(artifacts=report.artifacts, draw=report.draw, code=report.CODE, extra=report.EXTRA))
