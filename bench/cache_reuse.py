"""cache-reuse: what a re-run costs after changing one setting, as a fraction of the cold run.

    .venv/bin/python bench/cache_reuse.py [--smoke] [--workdir DIR] [--threads T] [--only KEY,KEY]

A cold run of the experiment (empty store: the embedded default in full mode, a tiny experiment in
smoke mode), then, against the same store, one run per changed setting (each change alone, on top of
the unchanged experiment), all through `gradiend-flow run ... --json` in child processes as a user runs
them. For each: process wall time and flow time as fractions of the cold run's, and which stages ran
(from the --json summary). Targets: decoder grid only <= 10% of cold, training lr only <= 35%.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Workdir, emit, log, machine, parse_common, run_cli, tiny_experiment, tiny_model_dir, write_yaml  # noqa: E402,E501

# one changed setting per stage (the stage whose config slice it is in)
CHANGES_FULL = {
    "data.seed": "data.seed=43",
    "extract.dtype": "extract.dtype=float32",
    "pre_prune.topk": "pre_prune.topk=0.05",
    "train.learning_rate": "train.learning_rate=5e-4",
    "select.threshold": "select.threshold=0.4",
    "decoder_grid.learning_rates": "decoder_grid.learning_rates=[0.01,0.001,0.0001]",
    "rewrite.direction": "rewrite.direction=weaken",
}
CHANGES_SMOKE = {
    "pre_prune.topk": "pre_prune.topk=0.2",
    "train.learning_rate": "train.learning_rate=5e-4",
    "decoder_grid.learning_rates": "decoder_grid.learning_rates=[0.5,0.05]",
}
TARGETS = {"decoder_grid.learning_rates": 0.10, "train.learning_rate": 0.35}


def main() -> None:
    args = parse_common(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--only", default=None, help="comma-separated change names to run (default: all)"),
        p.add_argument("--config", default=None, help="experiment YAML (full mode; default: embedded default)")))
    changes = CHANGES_SMOKE if args.smoke else CHANGES_FULL
    if args.only:
        changes = {k: v for k, v in {**CHANGES_FULL, **CHANGES_SMOKE}.items() if k in args.only.split(",")}
    with Workdir(args.workdir) as wd:
        cfg = (write_yaml(tiny_experiment(tiny_model_dir(wd)), wd / "tiny.yaml") if args.smoke
               else (Path(args.config).resolve() if args.config else None))
        store, home = wd / "store", wd / "prefect-home"
        log("cold run")
        cold = run_cli(cfg, store, threads=args.threads, prefect_home=home)
        runs = {}
        for name, setting in changes.items():
            log(f"re-run with {setting}")
            r = run_cli(cfg, store, [setting], threads=args.threads, prefect_home=home)
            runs[name] = {
                "set": setting, "wall_seconds": r["wall_seconds"], "flow_seconds": r["summary"]["seconds"],
                "fraction_of_cold": round(r["wall_seconds"] / cold["wall_seconds"], 4),
                "flow_fraction_of_cold": round(r["summary"]["seconds"] / cold["summary"]["seconds"], 4),
                "ran": r["ran"], "cached": r["cached"], "peak_rss_mib": r["peak_rss_mib"],
                "stage_seconds": {k: v["seconds"] for k, v in r["summary"]["stages"].items() if not v["cached"]},
            }
        log("re-run with nothing changed")
        same = run_cli(cfg, store, threads=args.threads, prefect_home=home)
        verdict = {k: {"max_fraction": t, "fraction": runs[k]["fraction_of_cold"],
                       "meets": runs[k]["fraction_of_cold"] <= t} for k, t in TARGETS.items() if k in runs}
        emit({
            "bench": "cache-reuse", "smoke": args.smoke, "machine": machine(),
            "config": str(cfg) if cfg else "embedded default",
            "cold": {"wall_seconds": cold["wall_seconds"], "flow_seconds": cold["summary"]["seconds"],
                     "peak_rss_mib": cold["peak_rss_mib"], "ran": cold["ran"],
                     "stage_seconds": {k: v["seconds"] for k, v in cold["summary"]["stages"].items()}},
            "reruns": runs,
            "unchanged": {"wall_seconds": same["wall_seconds"], "flow_seconds": same["summary"]["seconds"],
                          "fraction_of_cold": round(same["wall_seconds"] / cold["wall_seconds"], 4),
                          "ran": same["ran"]},
            "targets": verdict,
        })


if __name__ == "__main__":
    main()
