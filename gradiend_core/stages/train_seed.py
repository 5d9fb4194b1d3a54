"""train-seed: one GRADIEND training run fed from the (pruned) gradient store, one step per seed.

A training step's source/target is the mean of `base_batch_size` same-class examples' gradients: the
gradient of a base batch's mean loss (the reference semantics, exact for one-token targets), built from
stored per-example gradients so the batch size can change without re-extracting. Batches are drawn per
class in a seeded order, full batches only, round-robin over the classes, the same order every epoch
(gradient_rows.batch_plan).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..checkpoint import save_gradiend
from ..grad_store import GradientStore
from ..gradiend import BaseIdentity, Gradiend
from ..gradient_rows import EVAL_SPLITS, batch_plan, eval_rows, eval_split, make_eval_set, read_batches
from ..io import atomic_write_json
from ..param_map import load_param_map
from ..prefetch import prefetch
from ..reports import train_seed as report
from ..seeds import seeds_for
from ..training import train_gradiend
from ..manifests import info, out_path, store_dir
from .common import RUNTIME, pin_torch_threads, section
from .declaration import FanOut, Report, Stage, needs


UNHASHED = ("max_seeds", "device", "decoder_device")


def config_slice(cfg) -> dict:
    """The train section with its pair resolved (the first two data classes by default), without
    max_seeds (how many seeds there are is not part of any one seed) and without the devices (RUNTIME:
    train.device, default model.device, and train.decoder_device; the output is reused on any device)."""
    train = {k: v for k, v in section(cfg.train).items() if k not in UNHASHED}
    devices = {"device": cfg.train.device or cfg.model.device, "decoder_device": cfg.train.decoder_device}
    # without validation rows, evaluation falls back to test, then train (gradient_rows.eval_split); with
    # them (every earlier key) it is validation as before, so only such experiments' keys record it
    fallback = {"eval_splits": list(EVAL_SPLITS)} if cfg.data.validation_ratio == 0 else {}
    return {"train": {**train, "pair": list(cfg.pair())}, **fallback, RUNTIME: devices}


def seeds(cfg) -> list[int]:
    return seeds_for(cfg.train.seed, cfg.train.max_seeds)


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pin_torch_threads(1)  # see common.pin_torch_threads
    from ..experiment import TrainSection

    t = TrainSection(**conf["train"], **conf[RUNTIME])
    seed = int(conf["seed"])
    ext, pre = inputs["extract"], inputs["pre_prune"]
    rows = pd.read_parquet(out_path(ext) / "rows.parquet")
    store = GradientStore(store_dir(pre))
    pair = (t.pair[0], t.pair[1])  # +1, -1: only their A->B and B->A rows are trained and evaluated on
    plan = batch_plan(rows, t.base_batch_size, t.seed, pair)

    def batches(epoch: int):  # step k+1's rows are read while step k trains
        return prefetch(read_batches(store, plan, t.batch_size, t.source, t.target))

    split = eval_split(rows, pair)  # validation, else test, else train
    eval_set = make_eval_set(rows, store, split, t.source, t.eval_max_rows, pair)
    total = t.max_steps if t.max_steps > 0 else t.num_epochs * (len(plan) // t.batch_size)
    result = train_gradiend(batches, eval_set, store.dim, t, seed,
                            progress=lambda step, tot, i: progress(step / max(total, 1), f"seed {seed}: step {step}"))
    classes = [name for name, _ in info(ext)["classes"]]
    # wall time stays out of the files (it would make two identical runs' bytes differ); the info has it
    stats = {k: v for k, v in result.stats.items() if k != "seconds"}
    g = Gradiend(result.model, load_param_map(out_path(pre)), source=t.source, target=t.target,
                 directions={c: 1 if c == pair[0] else -1 if c == pair[1] else 0 for c in classes},
                 base=BaseIdentity(**{k: info(ext)["base"][k] for k in ("name_or_path", "digest")}),
                 training=stats)
    save_gradiend(g, out / "model")
    atomic_write_json(out / "stats.json", stats)
    return {"seed": seed, "converged": stats.get("converged"), "best": stats.get("best"),
            "steps": stats.get("steps"), "seconds": result.stats.get("seconds"), "classes": list(pair),
            "device": result.device, "eval_split": split if eval_set is not None and t.do_eval else None,
            "rows": transitions(rows, plan, eval_rows(rows, split, pair, t.eval_max_rows))}


def transitions(rows: pd.DataFrame, plan: list[list[int]], evaluated: pd.DataFrame) -> dict:
    """How many rows of each transition the run trained on and evaluated on (its pair's only)."""
    by = (rows["factual_class"] + "->" + rows["alternative_class"]).set_axis(rows["store_row"])
    count = lambda idx: {k: int(v) for k, v in by[list(idx)].value_counts().sort_index().items()}  # noqa: E731
    return {"train": count(r for b in plan for r in b), "validation": count(evaluated["store_row"])}


# version 2: fused AdamW (same rule, other rounding); 3: max_seeds out of the key, no plot in the output;
# 4: only the pair's transitions are trained and evaluated on
STAGE = Stage(name="train-seed", version="4", sections=("train",), build=build, conf=config_slice,
              inputs=(needs("extract", "extract-gradients"), needs("pre_prune", "pre-prune")),
              fanout=FanOut("seed", seeds),
              report=Report(artifacts=report.artifacts, draw=report.draw, code=report.CODE))
