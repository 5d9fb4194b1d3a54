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
    sr["eval_split"] = evaluated_on(seeds.values())
    sr.update(selection_warning(sr, len(runs)))
    shutil.copytree(out_path(winner) / "model", out / "model")
    shutil.copy2(out_path(winner) / "stats.json", out / "stats.json")  # the winner's curve, for the report
    atomic_write_json(out / "seed_report.json", sr)
    return {"best_seed": sr["best_seed"], "strategy": sr["strategy"], "convergent_count": sr["convergent_count"],
            "n_seeds": len(runs), "classes": winner["info"].get("classes"), "eval_split": sr["eval_split"],
            **({"warning": sr["warning"]} if "warning" in sr else {})}


def evaluated_on(seeds) -> str | None:
    """The split the seeds were evaluated on during training (None: not evaluated); a seed trained
    before it was recorded was evaluated on validation, or not at all (then it has no convergence)."""
    splits = {m["info"].get("eval_split", "validation" if m["info"].get("converged") is not None else None)
              for m in seeds}
    return next(iter(splits)) if len(splits) == 1 else None


def selection_warning(sr: dict, n_seeds: int) -> dict:
    """{"warning": ...} when the choice rests on no held-out evaluation: no seed was evaluated (the first
    seed is taken), or they were evaluated on the test or train split (no validation rows)."""
    split = sr["eval_split"]
    if split is None and n_seeds > 1:
        return {"warning": f"no seed was evaluated during training (train.do_eval false, or no rows to evaluate "
                           f"on): seed {sr['best_seed']} is the first of {n_seeds}, not chosen on merit; set "
                           f"train.do_eval: true and give the data validation rows (data.validation_ratio)"}
    if split in ("test", "train"):
        return {"warning": f"seeds were evaluated on the {split} split (there are no validation rows: "
                           f"data.validation_ratio is 0), so the choice of seed {sr['best_seed']} is not held out "
                           f"from {'the test split evaluate-encoder may report on' if split == 'test' else 'training'}; "
                           f"give validation rows (data.validation_ratio > 0)"}
    return {}


# version 2: the winner's stats.json instead of its plot (plots are the report's)
STAGE = Stage(name="select-seed", version="2", sections=("select",), build=build,
              inputs=(needs("seed", "train-seed", every=True),),
              report=Report(artifacts=report.artifacts, draw=report.draw, code=report.CODE, extra=report.EXTRA))
