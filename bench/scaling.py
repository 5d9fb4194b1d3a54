"""scaling: how each stage's time, disk and peak RSS grow with the number of rows and with model size.

    .venv/bin/python bench/scaling.py [--smoke] [--rows 256,1024,4096] [--model-rows 32] [--threads T]
                                      [--include PATTERN,...] [--workdir DIR]

Every stage runs in its own child process (bench/_stage_worker.py, no Prefect), so each stage's peak
RSS is its own (os.wait4). Rows: data.max_per_class = rows / 2 (two classes), neutral rows fixed.
Models (at --model-rows rows): the MiniLM with its fitted head, and a randomly initialised BERT-base
(110M parameters, built locally: cost does not need trained weights). Smoke mode uses tiny in-process
models (hidden 32 / 2 layers vs hidden 64 / 4 layers) and measures stages up to pre-prune.

Full mode extracts gradients of `--include` (default one layer-0 tensor, so the backward still runs
through every layer) to keep the stored gradients on disk bounded: the whole backbone of the MiniLM is
22.5M entries, 90 MB per row in float16 (factual + alternative), i.e. 370 GB at 4,096 rows.
Target: extract-gradients and pre-prune peak RSS within 10% from the smallest to the largest row count.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Workdir, emit, log, machine, parse_common, random_bert_base_dir,  # noqa: E402
                     run_stage_isolated, tiny_experiment, tiny_model_dir, write_yaml)

FULL_STAGES = ["prepare-model", "create-data", "extract-gradients", "pre-prune", "train-seed-0", "select-seed",
               "evaluate-encoder"]
SMOKE_STAGES = ["prepare-model", "create-data", "extract-gradients", "pre-prune"]
FLAT = ("extract-gradients", "pre-prune")   # stages whose peak RSS must not grow with rows
DEFAULT_INCLUDE = ["*layer.0.attention.output.dense.weight"]


def experiment(base: dict, rows: int, model: str | None = None, include: list[str] | None = None) -> dict:
    e = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    e["data"] = {**e.get("data", {}), "builtin": "pronoun_number", "max_per_class": max(10, rows // 2)}
    e["train"] = {**e.get("train", {}), "max_seeds": 1}
    if model:
        e["model"] = {**e.get("model", {}), "name_or_path": model}
    if include:
        e["extract"] = {**e.get("extract", {}), "include": include}
    return e


def full_base() -> dict:
    return {"name": "bench-scaling", "extract": {"max_neutral_rows": 8},
            "pre_prune": {"n_samples": 8, "topk": 0.1},
            "train": {"max_steps": 50, "eval_steps": 25, "eval_max_rows": 16}}


def run_plan(cfg: Path, store: Path, stages: list[str], threads: int | None, done: dict) -> dict:
    """Each listed stage in its own process, in plan order; outputs already built in this run are skipped."""
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan

    steps = plan(load_experiment(cfg))
    out = {}
    for sid in stages:
        p = steps[sid]
        if (p.stage, p.key) in done:  # same output as an earlier size: its measurement, not a re-run
            out[sid] = {**done[(p.stage, p.key)], "shared": True}
            continue
        log(f"  {sid}")
        r = run_stage_isolated(cfg, store, sid, threads=threads)
        out[sid] = {"seconds": r["seconds"], "process_seconds": r["process_seconds"],
                    "peak_rss_mib": r["peak_rss_mib"], "disk_bytes": r["disk_bytes"], "cached": r["cached"]}
        if sid == "extract-gradients":
            out[sid].update(n_rows=r["info"].get("n_rows"), dim=r["info"].get("dim"))
        done[(p.stage, p.key)] = out[sid]
    return out


def growth(series: dict[str, dict]) -> dict:
    """Largest / smallest size, per stage and measure."""
    keys = list(series)
    lo, hi = series[keys[0]], series[keys[-1]]
    g = {}
    for sid, a in lo.items():
        b = hi.get(sid, {})
        if "seconds" not in a or "seconds" not in b:
            continue
        g[sid] = {m: round(b[m] / a[m], 3) if a[m] else None for m in ("seconds", "peak_rss_mib", "disk_bytes")}
    return g


def main() -> None:
    args = parse_common(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--rows", default=None, help="comma-separated row counts (default 256,1024,4096; smoke 24,48)"),
        p.add_argument("--model-rows", type=int, default=None, help="rows for the model-size runs (default 32)"),
        p.add_argument("--include", default=None, help="extract.include patterns (full mode), comma-separated"),
        p.add_argument("--no-models", action="store_true", help="skip the model-size comparison")))
    rows_list = [int(r) for r in (args.rows or ("24,48" if args.smoke else "256,1024,4096")).split(",")]
    model_rows = args.model_rows or (24 if args.smoke else 32)
    include = args.include.split(",") if args.include else (None if args.smoke else DEFAULT_INCLUDE)
    stages = SMOKE_STAGES if args.smoke else FULL_STAGES
    with Workdir(args.workdir) as wd:
        store, done = wd / "store", {}
        if args.smoke:
            base = tiny_experiment(tiny_model_dir(wd))
            models = {"tiny-h32-l2": None, "tiny-h64-l4": str(tiny_model_dir(wd, hidden=64, layers=4))}
        else:
            base = full_base()
            models = {"all-MiniLM-L6-v2 (fitted head)": None}
            if not args.no_models:
                models["random BERT-base (110M)"] = str(random_bert_base_dir(wd))
        by_rows = {}
        for n in rows_list:
            log(f"rows={n}")
            cfg = write_yaml(experiment(base, n, include=include), wd / f"rows-{n}.yaml")
            by_rows[str(n)] = run_plan(cfg, store, stages, args.threads, done)
        by_model = {}
        if not args.no_models:
            for name, path in models.items():
                log(f"model={name}")
                e = experiment(base, model_rows, model=path, include=include)
                if path and not args.smoke:
                    e["model"]["fit_head"] = "never"  # random weights: the head is as meaningful as the rest
                cfg = write_yaml(e, wd / f"model-{len(by_model)}.yaml")
                mstages = stages if not args.smoke else ["prepare-model", "create-data", "extract-gradients"]
                by_model[name] = run_plan(cfg, store, mstages, args.threads, done)
        g = growth(by_rows)
        flat = {sid: {"rss_growth": g[sid]["peak_rss_mib"], "within_10pct": abs(g[sid]["peak_rss_mib"] - 1) <= 0.10}
                for sid in FLAT if sid in g and g[sid]["peak_rss_mib"] is not None}
        emit({"bench": "scaling", "smoke": args.smoke, "machine": machine(), "threads": args.threads,
              "include": include or "default (backbone)", "rows": rows_list, "by_rows": by_rows,
              "rows_growth_largest_over_smallest": g, "model_rows": model_rows, "by_model": by_model,
              "model_growth_largest_over_smallest": growth(by_model) if len(by_model) > 1 else {},
              "targets": {"peak_rss_flat_in_rows": flat}})


if __name__ == "__main__":
    main()
