"""The original library's side of compare-reference. Runs ONLY under bench/.ref-venv's python
(gradiend==0.2.3 installed there); the project never imports the original library.

    bench/.ref-venv/bin/python bench/reference_runner.py JOB.json

JOB.json (written by compare_reference.py): model_dir, training (CSV in the reference's merged
format: masked, split, label_class, label, alternative, alternative_class), neutral (CSV, column
text), experiment_dir, classes [+1 class, -1 class], threads, and the training/evaluation settings.
Prints one JSON object: per-step wall times, peak RSS, disk used and the quality reached.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path


def log(msg: str) -> None:
    print(f"[reference {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def dir_size(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def training_time_stats(exp: Path) -> dict:
    """The reference's own breakdown of train() (gradient creation, GRADIEND update, in-training eval)."""
    for p in sorted(exp.rglob("training.json")):
        try:
            t = json.loads(p.read_text()).get("time") or {}
        except (OSError, ValueError):
            continue
        if t:
            return {k: round(float(v), 2) for k, v in t.items() if isinstance(v, (int, float))}
    return {}


def read_table(pd, path: str):
    """CSV (what compare_reference writes) or parquet; strings stay strings ("None", "NA" are words)."""
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=False, dtype=str)


def selected_cell(dec: dict, cls: str) -> dict:
    s = dec.get(cls) or {}
    base = (dec.get("grid") or {}).get("base") or {}
    base_value = (base.get("probs") or {}).get(cls)
    return {"feature_factor": s.get("feature_factor"), "learning_rate": s.get("learning_rate"),
            "value": s.get("value"), "lms": s.get("lms"), "base_lms": s.get("base_lms"),
            "base_value": base_value}


def start(job_path: str):
    """The job, its start time, its training and neutral tables, after importing torch (at the job's
    thread count) and the reference."""
    job = json.loads(Path(job_path).read_text())
    t_start = time.perf_counter()
    import pandas as pd
    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    import gradiend  # noqa: F401  (counted in "imports")

    Path(job["experiment_dir"]).mkdir(parents=True, exist_ok=True)
    return job, t_start, read_table(pd, job["training"]), read_table(pd, job["neutral"])[["text"]]


def main(job_path: str) -> dict:
    job, t_start, data, neutral = start(job_path)
    import torch
    from gradiend import PrePruneConfig, TextPredictionTrainer, TrainingArguments

    steps: dict[str, float] = {"imports": time.perf_counter() - t_start}
    exp = Path(job["experiment_dir"])
    pos, neg = job["classes"]
    pre = job.get("pre_prune")
    args = TrainingArguments(
        experiment_dir=str(exp), use_cache=False, source=job["source"], target=job["target"],
        train_batch_size=job["batch_size"], max_steps=job["max_steps"], eval_steps=job["eval_steps"],
        learning_rate=job["learning_rate"], seed=job["seed"], max_seeds=job["max_seeds"],
        min_convergent_seeds=1, encoder_eval_max_size=job["encoder_eval_max_size"],
        decoder_eval_lrs=job["decoder_lrs"], decoder_eval_max_size_training_like=job["decoder_max_rows"],
        decoder_eval_max_size_neutral=job["decoder_lms_texts"],
        pre_prune_config=PrePruneConfig(n_samples=pre["n_samples"], topk=pre["topk"], source=pre["source"])
        if pre else None,
    )
    trainer = TextPredictionTrainer(model=job["model_dir"], data=data, target_classes=[pos, neg], args=args,
                                    eval_neutral_data=neutral, split_col="split")
    t = time.perf_counter()
    log("train()")
    trainer.train()
    steps["train"] = time.perf_counter() - t
    t = time.perf_counter()
    log("evaluate_encoder()")
    enc = trainer.evaluate_encoder(split="test", max_size=job["encoder_eval_max_size"])
    steps["evaluate_encoder"] = time.perf_counter() - t
    t = time.perf_counter()
    log("evaluate_decoder()")
    dec = trainer.evaluate_decoder(target_class=pos, lrs=job["decoder_lrs"],
                                   max_size_training_like=job["decoder_max_rows"],
                                   max_size_neutral=job["decoder_lms_texts"])
    steps["evaluate_decoder"] = time.perf_counter() - t
    t = time.perf_counter()
    log("rewrite_base_model()")
    trainer.rewrite_base_model(decoder_results=dec, target_class=pos, output_dir=str(exp / "rewritten"))
    steps["rewrite"] = time.perf_counter() - t
    total = time.perf_counter() - t_start
    mbc = enc.get("mean_by_class") or {}
    return {
        "status": "ok", "gradiend_version": _version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "seconds": {k: round(v, 2) for k, v in steps.items()}, "total_seconds": round(total, 2),
        "train_breakdown": training_time_stats(exp),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "disk_bytes": dir_size(exp),
        "encoder": {"correlation": enc.get("correlation"), "mean_by_class": {str(k): v for k, v in mbc.items()}},
        "selected": selected_cell(dec, pos),
    }


def _version() -> str:
    from importlib.metadata import version

    return version("gradiend")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(json.dumps(main(sys.argv[1]), default=str), flush=True)
