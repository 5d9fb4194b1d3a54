"""scaling: how each stage's time, disk and peak RSS grow with the number of rows and with model size.

    .venv/bin/python bench/scaling.py [--smoke] [--rows 256,1024,4096] [--model-rows 20] [--threads T]
                                      [--include PATTERN,...] [--no-rows] [--no-models] [--workdir DIR]

Every stage runs in its own child process (bench/_stage_worker.py, no Prefect), so each stage's peak
RSS is its own (os.wait4). Rows: data.max_per_class = rows / 2 (two classes), neutral rows fixed.
Smoke mode uses tiny in-process models (a BERT hidden 32 / 2 layers, a GPT-2 hidden 64 / 4 layers) and
measures stages up to pre-prune (rows) and extract-gradients (models).

Rows (full mode): the MiniLM with its fitted head, extracting `--include` (default one layer-0 tensor, so
the backward still runs through every layer) to keep the stored gradients on disk bounded: the whole
backbone of the MiniLM is 22.5M entries, 90 MB per row in float16 (factual + alternative), i.e. 370 GB
at 4,096 rows. Target: extract-gradients and pre-prune peak RSS within 10% from the smallest to the
largest row count.

Models (full mode): the WHOLE flow (every stage of the plan, train to rewrite) at `--model-rows` rows on
randomly initialised models built locally (cost needs no trained weights): a BERT-mini (11M: 256 wide,
4 layers), BERT-base (110M) and GPT-2 small (124M, next-token objective), every backbone tensor
selected and pre-pruned to the top 10% of 8 sampled rows, one seed of 20 steps, a 2-learning-rate decoder grid.
`memory_model` fits, per stage, peak RSS = a + b * parameters over the models (least squares) and
gives the largest model whose every stage fits in 24 GiB: min over stages of (24 GiB - a) / b.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Workdir, emit, log, machine, parse_common, random_bert_base_dir,  # noqa: E402
                     random_bert_dir, random_gpt2_small_dir, run_stage_isolated, tiny_experiment,
                     tiny_model_dir, write_yaml)

FULL_STAGES = ["prepare-model", "create-data", "extract-gradients", "pre-prune", "train-seed-0", "select-seed",
               "evaluate-encoder"]
SMOKE_STAGES = ["prepare-model", "create-data", "extract-gradients", "pre-prune"]
FLAT = ("extract-gradients", "pre-prune")   # stages whose peak RSS must not grow with rows
DEFAULT_INCLUDE = ["*layer.0.attention.output.dense.weight"]
MEMORY_GIB = 24  # the machine budget the model-size fit answers for


def models_full(wd: Path) -> dict[str, str]:
    """Randomly initialised models of the model-size runs, name -> local dir."""
    return {"random BERT-mini (11M)": str(random_bert_dir(wd, "random-bert-mini", hidden_size=256, num_hidden_layers=4,
                                                            num_attention_heads=4, intermediate_size=1024)),
            "random BERT-base (110M)": str(random_bert_base_dir(wd)),
            "random GPT-2 small (124M)": str(random_gpt2_small_dir(wd))}


def models_smoke(wd: Path) -> dict[str, str | None]:
    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import save_tiny, tiny_clm

    clm = wd / "tiny-gpt2-h64-l4"
    if not (clm / "config.json").exists():
        save_tiny(*tiny_clm(seed=0, hidden=64, layers=4, words=builtin_vocabulary()), clm)
    return {"tiny-h32-l2": None, "tiny-gpt2-h64-l4": str(clm)}


def model_experiment(base: dict, rows: int, path: str | None, smoke: bool) -> dict:
    """The model-size runs' experiment: full mode keeps every stage small (the whole flow runs)."""
    e = experiment(base, rows, model=path)
    if path:
        e["model"]["fit_head"] = "never"  # random weights: the head is as meaningful as the rest
    if not smoke:
        e["extract"] = {"max_neutral_rows": 8, "max_training_masked_rows": 8}
        e["train"] = {**e["train"], "max_steps": 20, "eval_steps": 10}
        e["decoder_grid"] = {"learning_rates": [1e-2, 1e-3], "max_rows_per_class": 4, "lms_max_texts": 8,
                             "bootstrap": 100}
    return e


def memory_model(by_model: dict[str, dict], gib: float = MEMORY_GIB) -> dict:
    """Per stage: peak RSS (MiB) = a + b * parameters, least squares over the models; the largest model
    whose stage fits in `gib` GiB is (gib * 1024 - a) / b parameters (None: RSS does not grow with size)."""
    import numpy as np

    n = {m: r.get("prepare-model", {}).get("n_parameters") for m, r in by_model.items()}
    stages = {}
    for sid in next(iter(by_model.values()), {}):
        pts = [(n[m], r[sid]["peak_rss_mib"]) for m, r in by_model.items() if n[m] and "peak_rss_mib" in r.get(sid, {})]
        if len(pts) < 2 or len({p for p, _ in pts}) < 2:
            continue
        b, a = np.polyfit([p for p, _ in pts], [y for _, y in pts], 1)
        per_param = round(float(b) * 2**20, 2)  # bytes; under 0.01 B a parameter: flat in model size
        largest = (gib * 1024 - a) / b if per_param > 0 else None
        stages[sid] = {"a_mib": round(float(a), 1), "b_bytes_per_param": per_param,
                       "largest_params": None if largest is None else int(largest)}
    fits = {sid: v["largest_params"] for sid, v in stages.items() if v["largest_params"] is not None}
    limiting = min(fits, key=fits.get) if fits else None
    return {"formula": "peak_rss_mib = a_mib + b_bytes_per_param / 2**20 * n_parameters", "gib": gib,
            "stages": stages, "limiting_stage": limiting, "largest_params": fits.get(limiting)}


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


def run_plan(cfg: Path, store: Path, stages: list[str] | None, threads: int | None, done: dict) -> dict:
    """Each listed stage (None: every stage of the plan) in its own process, in plan order; outputs already
    built in this run are skipped."""
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan

    steps = plan(load_experiment(cfg))
    out = {}
    for sid in stages or list(steps):
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
        if sid == "prepare-model":
            out[sid]["n_parameters"] = r["info"].get("n_parameters")
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
        p.add_argument("--model-rows", type=int, default=None, help="rows for the model-size runs (default 20)"),
        p.add_argument("--include", default=None, help="extract.include patterns (row runs), comma-separated"),
        p.add_argument("--no-rows", action="store_true", help="skip the row-count series"),
        p.add_argument("--no-models", action="store_true", help="skip the model-size comparison")))
    rows_list = [] if args.no_rows else [int(r) for r in (args.rows or ("24,48" if args.smoke else "256,1024,4096")).split(",")]
    include = args.include.split(",") if args.include else (None if args.smoke else DEFAULT_INCLUDE)
    with Workdir(args.workdir) as wd:
        store, done = wd / "store", {}
        base = tiny_experiment(tiny_model_dir(wd)) if args.smoke else full_base()
        by_rows = {}
        for n in rows_list:
            log(f"rows={n}")
            cfg = write_yaml(experiment(base, n, include=include), wd / f"rows-{n}.yaml")
            by_rows[str(n)] = run_plan(cfg, store, SMOKE_STAGES if args.smoke else FULL_STAGES, args.threads, done)
        by_model = {} if args.no_models else run_models(args, wd, base, store, done)
        g = growth(by_rows) if by_rows else {}
        flat = {sid: {"rss_growth": g[sid]["peak_rss_mib"], "within_10pct": abs(g[sid]["peak_rss_mib"] - 1) <= 0.10}
                for sid in FLAT if sid in g and g[sid]["peak_rss_mib"] is not None}
        emit({"bench": "scaling", "smoke": args.smoke, "machine": machine(), "threads": args.threads,
              "include": include or "default (backbone)", "rows": rows_list, "by_rows": by_rows,
              "rows_growth_largest_over_smallest": g, "model_rows": args.model_rows or (24 if args.smoke else 20),
              "by_model": by_model, "model_growth_largest_over_smallest": growth(by_model) if len(by_model) > 1 else {},
              "memory_model": memory_model(by_model), "targets": {"peak_rss_flat_in_rows": flat}})


def run_models(args, wd: Path, base: dict, store: Path, done: dict) -> dict:
    """{model: {stage id: measurement}}: smoke up to extract-gradients, full mode the whole plan."""
    rows = args.model_rows or (24 if args.smoke else 20)
    models = models_smoke(wd) if args.smoke else models_full(wd)
    out = {}
    for i, (name, path) in enumerate(models.items()):
        log(f"model={name}")
        cfg = write_yaml(model_experiment(base, rows, path, args.smoke), wd / f"model-{i}.yaml")
        out[name] = run_plan(cfg, store, ["prepare-model", "create-data", "extract-gradients"] if args.smoke else None,
                             args.threads, done)
    return out


if __name__ == "__main__":
    main()
