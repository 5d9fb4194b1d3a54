"""train-seed: one GRADIEND training run fed from the (pruned) gradient store.

A training step's source/target is the mean of `base_batch_size` same-class examples' gradients: the
gradient of a base batch's mean loss (the reference semantics, exact for one-token targets), built from
stored per-example gradients so the batch size can change without re-extracting. Batches are drawn per
class in a seeded order, full batches only, round-robin over the classes, the same order every epoch.
"""
from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import torch

from ..checkpoint import save_gradiend
from ..grad_store import GradientStore, assemble
from ..gradiend import BaseIdentity, Gradiend
from ..io import atomic_write_json
from ..prefetch import prefetch
from ..training import EvalSet, TrainConfig, train_gradiend
from .common import info, out_path, pin_torch_threads, section, store_dir
from .extract_gradients import read_param_map

NAME = "train-seed"
VERSION = "2"  # 2: fused AdamW (same rule, other rounding)
EVAL_CHUNK = 4  # rows read per evaluation chunk: bounds the read transient (2 kinds x 4 x P float32)
EVAL_CACHE_BYTES = 512 * 2**20  # validation sources up to this size (float32) are read once per seed


def config_slice(cfg, seed: int) -> dict:
    return {"train": section(cfg.train), "seed": seed}


def train_config(t) -> TrainConfig:
    return TrainConfig(learning_rate=t.learning_rate, weight_decay=t.weight_decay, adam_epsilon=t.adam_epsilon,
                       optim=t.optim, num_epochs=t.num_epochs, max_steps=t.max_steps, batch_size=t.batch_size,
                       eval_steps=t.eval_steps, latent_dim=t.latent_dim, activation_encoder=t.activation_encoder,
                       activation_decoder=t.activation_decoder, bias_decoder=t.bias_decoder, normalize=t.normalize)


def batch_plan(rows: pd.DataFrame, base_batch_size: int, seed: int) -> list[list[int]]:
    """Store rows of each base batch: per class shuffled, full batches, round-robin over classes."""
    train = rows[(rows["kind"] == "training") & (rows["split"] == "train") & (rows["label"] != 0)]
    groups = []
    for _, g in sorted(train.groupby("label"), key=lambda kv: -kv[0]):  # +1 class first
        idx = list(g["store_row"])
        random.Random(seed).shuffle(idx)
        groups.append([idx[i:i + base_batch_size] for i in range(0, len(idx) - base_batch_size + 1, base_batch_size)])
    groups = [g for g in groups if g]
    if not groups:
        from ..errors import DataError

        raise DataError(f"no full training batch of {base_batch_size} rows; lower train.base_batch_size "
                        f"or add data (data.max_per_class)")
    # round-robin over classes; a smaller class is cycled, a larger one's tail is not visited (reference)
    plan = []
    for b in range(sum(len(g) for g in groups)):
        g = groups[b % len(groups)]
        plan.append(g[(b // len(groups)) % len(g)])
    return plan

def eval_label_sign(source: str) -> int:
    """An alternative-token gradient carries the other class: its label is negated (reference)."""
    return -1 if source == "alternative" else 1


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pin_torch_threads(1)  # see common.pin_torch_threads
    warm = warm_up_plotting()  # the convergence plot at the end then costs ~0.3 s instead of ~1.1 s
    from ..experiment import TrainSection

    t = TrainSection(**conf["train"])
    seed = int(conf["seed"])
    ext, pre = inputs["extract"], inputs["pre_prune"]
    rows = pd.read_parquet(out_path(ext) / "rows.parquet")
    store = GradientStore(store_dir(pre))
    pmap = read_param_map(out_path(pre))
    plan = batch_plan(rows, t.base_batch_size, t.seed)

    def read_batches(epoch: int):
        for i in range(0, len(plan) - t.batch_size + 1, t.batch_size):
            src, tgt = [], []
            for b in plan[i:i + t.batch_size]:
                g_f, g_a = store.rows("factual", b).mean(0), store.rows("alternative", b).mean(0)  # (P,)
                src.append(assemble(t.source, g_f, g_a))
                tgt.append(assemble(t.target, g_f, g_a))
            yield torch.stack(src), torch.stack(tgt)  # (G, P) each

    def batches(epoch: int):
        return prefetch(read_batches(epoch))  # step k+1's rows are read while step k trains

    eval_set = make_eval_set(rows, store, "validation", t.source, t.eval_max_rows)
    total = t.max_steps if t.max_steps > 0 else t.num_epochs * (len(plan) // t.batch_size)
    result = train_gradiend(batches, eval_set, store.dim, train_config(t), seed,
                            progress=lambda step, tot, i: progress(step / max(total, 1), f"seed {seed}: step {step}"))
    classes = [name for name, _ in info(ext)["classes"]]  # config order: first class is label +1
    # wall time stays out of the files (it would make two identical runs' bytes differ); the info has it
    stats = {k: v for k, v in result.stats.items() if k != "seconds"}
    g = Gradiend(result.model, pmap, source=t.source, target=t.target,
                 directions={c: (1 if i == 0 else -1 if i == 1 else 0) for i, c in enumerate(classes)},
                 base=BaseIdentity(**{k: info(ext)["base"][k] for k in ("name_or_path", "digest")}),
                 training=stats)
    save_gradiend(g, out / "model")
    atomic_write_json(out / "stats.json", stats)
    if stats.get("eval_steps"):  # nothing to plot without in-training evaluation
        warm.join()
        _plot(stats, out / "training_convergence.png", classes)
    return {"seed": seed, "converged": stats.get("converged"), "best": stats.get("best"),
            "steps": stats.get("steps"), "seconds": result.stats.get("seconds")}


def make_eval_set(rows: pd.DataFrame, store: GradientStore, split: str, source: str,
                  max_rows_per_class: int | None) -> EvalSet | None:
    ev = rows[(rows["kind"] == "training") & (rows["split"] == split) & (rows["label"] != 0)]
    if max_rows_per_class is not None:
        ev = ev.groupby("factual_class", sort=False).head(max_rows_per_class)
    if ev.empty:
        return None
    idx = list(ev["store_row"])

    def read():
        for i in range(0, len(idx), EVAL_CHUNK):
            part = idx[i:i + EVAL_CHUNK]
            yield assemble(source, store.rows("factual", part), store.rows("alternative", part))

    if len(idx) * store.dim * 4 > EVAL_CACHE_BYTES:
        sources = read  # streamed again at every evaluation: memory stays one chunk
    else:  # read once, reused by every in-training evaluation (the same rows each time)
        cached = list(read())

        def sources():
            return iter(cached)

    labels = torch.tensor(ev["label"].to_numpy(), dtype=torch.float32) * eval_label_sign(source)
    return EvalSet(sources=sources, labels=labels, classes=list(ev["factual_class"]))


def warm_up_plotting():
    """Import matplotlib and render a tiny figure on a background thread (see plots.warm_up): it runs
    while training does, which leaves the GIL free most of the time (torch ops release it)."""
    import threading

    def warm() -> None:
        try:
            from ..plots import warm_up

            warm_up()
        except Exception:  # only a head start: the real plot reports any problem itself
            pass

    t = threading.Thread(target=warm, name="warm-plots", daemon=True)
    t.start()
    return t


def _plot(stats: dict, path: Path, classes: list[str]) -> None:
    from ..plots import plot_training_convergence

    names = {"1": classes[0], "-1": classes[1]} if len(classes) >= 2 else None
    plot_training_convergence(stats, path, class_names=names)
