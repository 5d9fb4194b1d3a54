"""select-seed: convergence-aware choice among the trained seeds; the report keeps every candidate."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..io import atomic_write_json, read_json
from ..seeds import SeedSelectionConfig, select_seed
from .common import out_path, section

NAME = "select-seed"
VERSION = "1"


def config_slice(cfg) -> dict:
    return {"select": section(cfg.select)}


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    seeds = {name: m for name, m in inputs.items() if name.startswith("seed_")}
    runs = [{"seed": int(m["info"]["seed"]), "stats": read_json(out_path(m) / "stats.json")} for m in seeds.values()]
    report = select_seed(runs, SeedSelectionConfig(**conf["select"]))
    winner = next(m for m in seeds.values() if int(m["info"]["seed"]) == report["best_seed"])
    for r in report["runs"]:
        r["train_key"] = next(m["key"] for m in seeds.values() if int(m["info"]["seed"]) == r["seed"])
    shutil.copytree(out_path(winner) / "model", out / "model")
    plot = out_path(winner) / "training_convergence.png"
    if plot.exists():
        shutil.copy2(plot, out / "training_convergence.png")
    atomic_write_json(out / "seed_report.json", report)
    return {"best_seed": report["best_seed"], "strategy": report["strategy"],
            "convergent_count": report["convergent_count"], "n_seeds": len(runs)}
