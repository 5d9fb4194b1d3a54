"""compare-reference-suite: gradiend-flow's suite against the original library's SymmetricTrainerSuite
(gradiend==0.2.3) on the same classes, rows and settings.

    .venv/bin/python bench/compare_reference_suite.py [--smoke] [--threads 1] [--workdir DIR] [--ref-venv DIR]
        [--classes 1SG,1PL,3SG,3PL] [--rows 24] [--steps 8] [--lr 1e-3]

Same work on both sides (as compare_reference.py: our prepare-model's model directory, our create-data
rows exported to the reference's merged table, the same seed, steps, base batch, learning rate, eval
interval, encoder-evaluation size and pre-prune setting): every unordered pair of the classes, one seed
each. Ours: `gradiend-flow run suite.yaml` (a `suite:` section, the comparison over the measures both
libraries compute, ungrouped); the reference: `bench/.ref-venv/bin/python bench/reference_suite_runner.py`
(SymmetricTrainerSuite: train, evaluate_encoder, compute_similarity_matrix per measure).

Reported: each side's wall time in this run, each pair's encoder correlation on both sides, and per
measure the Spearman rank correlation between the two sides' similarity matrices over their
off-diagonal cells (each unordered pair of GRADIENDs once: the matrices are symmetric). Smoke mode
never installs the reference: without a ready venv its side is "skipped", with the reason.
"""
from __future__ import annotations

import os
import sys
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (Workdir, emit, log, machine, parse_common, run_cli, tiny_experiment,  # noqa: E402
                     tiny_model_dir, write_yaml)
from compare_reference import (REF_VENV, ensure_ref_venv, export_reference_data,  # noqa: E402
                               prepared_model_dir, ref_ready, reference_job, run_reference,
                               setup_stages)

# the measures both libraries compute, with the part each reads (the reference's defaults, ours the same)
MEASURES = {"cosine": "encoder-weight", "spearman": "encoder-weight", "topk_overlap": "decoder-weight",
            "mass_overlap": "encoder-weight"}
TOPK = 1000  # topk_overlap's and mass_overlap's top-k on both sides
WORDS = {"1SG": ["i"], "1PL": ["we"], "2": ["you"], "3SG": ["he", "she", "it"], "3PL": ["they"]}


def experiment(smoke: bool, wd: Path, classes: list[str], rows: int, steps: int, lr: float) -> dict:
    """Our suite experiment; the reference side's settings are read back from it."""
    data = {"builtin": "person_number", "classes": {c: WORDS[c] for c in classes}, "max_per_class": rows}
    suite = {"pairs": "all", "compare": {"measures": list(MEASURES), "topk": TOPK, "group_by": [],
                                         "topk_parts": ["decoder-weight"]}}
    train = {"base_batch_size": 2, "batch_size": 1, "max_steps": steps, "eval_steps": steps,
             "learning_rate": lr, "seed": 0, "max_seeds": 1}
    if smoke:
        e = tiny_experiment(smoke_model_dir(wd))
        e["data"].update(data, neutral_max=12)
        e["train"].update(train)
        return {**e, "name": "bench-suite-tiny", "suite": suite}
    return {
        "name": "bench-compare-suite",
        "data": {**data, "neutral_max": 24},
        # every backbone tensor, word embeddings included: the reference's GRADIEND input (22.6M dims)
        "extract": {"max_neutral_rows": 8, "exclude": []},
        "pre_prune": {"enabled": True, "n_samples": 8, "topk": 0.1, "source": "alternative"},
        "train": train,
        "suite": suite,
    }


def smoke_model_dir(wd: Path) -> Path:
    """The smoke model with 512 positions: the reference pads every text to 256 tokens (the tiny model's
    128 positions would crash it when a ready reference venv runs in smoke mode)."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    src, dst = tiny_model_dir(wd), wd / "tiny-bert-512"
    if not (dst / "config.json").exists():
        cfg = AutoConfig.from_pretrained(str(src))
        cfg.max_position_embeddings = 512
        torch.manual_seed(0)
        AutoModelForMaskedLM.from_config(cfg).save_pretrained(str(dst))
        AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(dst))
    return dst


def suite_job(exp: dict, model_dir: str, classes: list[str], files: tuple[Path, Path], out: Path,
              threads: int | None) -> dict:
    """The reference runner's job: the suite's settings, read back from our experiment."""
    job = reference_job({**exp, "decoder_grid": {}}, model_dir, classes, files, out, threads)
    for k in ("decoder_lrs", "decoder_max_rows", "decoder_lms_texts"):  # a suite without rewrites
        del job[k]
    job.update(measures=MEASURES, topk=TOPK)
    return job


# ---------------------------------------------------------------------------------------- our side

def our_pairs(exp: dict) -> dict[str, tuple[str, str]]:
    """Our pair id -> (+1 class, -1 class), in suite order."""
    from gradiend_core.config_loader import from_dict
    from gradiend_core.experiment import ExperimentConfig
    from gradiend_core.suite import suite_pairs

    return suite_pairs(from_dict(ExperimentConfig, exp, ""))


def our_matrices(comparison_dir: str, pairs: dict[str, tuple[str, str]]) -> dict[str, dict]:
    """measure -> {"A|B": {"C|D": value}} from our comparison's similarity table (ungrouped), each
    GRADIEND named by its classes sorted (the reference's canonical pair order)."""
    from gradiend_core.compare import as_matrix, read_comparison

    sim = read_comparison(comparison_dir)["similarity"]
    sim = sim[sim["group_by"] == "none"]
    out = {}
    for m, part in MEASURES.items():
        one = sim[(sim["measure"] == m) & (sim["part"] == part)]
        mat = as_matrix(one).rename(index=lambda p: pair_name(pairs[p]), columns=lambda p: pair_name(pairs[p]))
        out[m] = {r: {c: _num(v) for c, v in row.items()} for r, row in mat.to_dict(orient="index").items()}
    return out


def pair_name(classes) -> str:
    return "|".join(sorted(classes))


def _num(v):
    v = float(v)
    return None if v != v else round(v, 6)


def our_report(run: dict, exp: dict) -> dict:
    s = run["summary"]
    pairs = our_pairs(exp)
    return {"status": "ok", "wall_seconds": run["wall_seconds"], "flow_seconds": s["seconds"],
            "stage_seconds": {k: v["seconds"] for k, v in s["stages"].items()},
            "ran": run["ran"], "cached": run["cached"], "peak_rss_mib": run["peak_rss_mib"],
            "encoder_correlation": {pair_name(pairs[p]): m["encoder_correlation"] for p, m in s["metrics"].items()},
            "similarity": our_matrices(s["comparison"]["dir"], pairs)}


# -------------------------------------------------------------------------------------- agreement

def off_diagonal(matrix: dict[str, dict], names: list[str]) -> list[float | None]:
    """The upper triangle's cells (each unordered pair of GRADIENDs once), in a fixed order."""
    return [matrix.get(a, {}).get(b) for a, b in combinations(names, 2)]


def rank_correlation(x: list, y: list) -> float | None:
    """Spearman's rho of the cells both sides define (average ranks for ties); None under 3 cells."""
    import numpy as np

    from gradiend_core.compare.measures import average_ranks, pearson

    keep = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if len(keep) < 3:
        return None
    a, b = (np.asarray(v, dtype=np.float64) for v in zip(*keep))
    rho = pearson(average_ranks(a), average_ranks(b))
    return None if rho != rho else round(rho, 4)


def agreement(ours: dict, ref: dict, names: list[str]) -> dict:
    """Per measure: both sides' off-diagonal cells and their Spearman correlation."""
    out = {}
    for m in MEASURES:
        o, r = off_diagonal(ours["similarity"][m], names), off_diagonal(ref["similarity"].get(m, {}), names)
        out[m] = {"spearman": rank_correlation(o, r), "n_cells": sum(a is not None and b is not None
                                                                     for a, b in zip(o, r)),
                  "cells": [f"{a} ~ {b}" for a, b in combinations(names, 2)], "ours": o, "reference": r}
    oc, rc = ours["encoder_correlation"], ref.get("encoder_correlation") or {}
    out["encoder_correlation"] = {"ours": [oc.get(n) for n in names], "reference": [rc.get(n) for n in names],
                                  "pairs": names}
    return out


# -------------------------------------------------------------------------------------------- main

def options(p) -> None:
    p.add_argument("--ref-venv", default=str(REF_VENV), help="the reference's venv (default bench/.ref-venv)")
    p.add_argument("--no-reference", action="store_true", help="run only our side")
    p.add_argument("--classes", default=None, help="person_number classes (default 1SG,1PL,3SG,3PL: 6 pairs; "
                   "smoke 1SG,3SG,3PL)")
    p.add_argument("--rows", type=int, default=None, help="sentences per class (default 24; smoke 16)")
    p.add_argument("--steps", type=int, default=None, help="training steps per pair on both sides (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="GRADIEND learning rate on both sides (default 1e-3)")
    p.add_argument("--ref-timeout", type=float, default=None, help="seconds before the reference is killed")


def reference_side(args, venv: Path, exp: dict, manifests: dict, classes: list[str], wd: Path,
                   threads: int | None) -> dict:
    if args.no_reference:
        return {"status": "skipped", "reason": "--no-reference given"}
    if args.smoke and ref_ready(venv) is not None:
        return {"status": "skipped", "reason": ref_ready(venv)}
    ensure_ref_venv(venv)
    files = export_reference_data(Path(manifests["create-data"]["path"]), wd / "reference-data")
    model_dir = str(prepared_model_dir(manifests["prepare-model"]))
    job = suite_job(exp, model_dir, classes, files, wd / "reference-run", threads)
    return run_reference(venv, job, wd, threads, args.ref_timeout or (300 if args.smoke else None),
                         runner="reference_suite_runner.py")


def report(args, threads: int | None, load: dict, exp: dict, setup: dict, manifests: dict, ours: dict,
           ref: dict) -> dict:
    """The benchmark's JSON object."""
    pairs = [pair_name(p) for p in our_pairs(exp).values()]
    t = exp["train"]
    out = {"bench": "compare-reference-suite", "smoke": args.smoke, "machine": machine(), "threads": threads,
           "load_average_1min": load,
           "same_work": {"classes": list(exp["data"]["classes"]), "pairs": pairs,
                         "rows_per_class": exp["data"]["max_per_class"], "steps": t["max_steps"],
                         "model_dir": str(prepared_model_dir(manifests["prepare-model"])),
                         "measures": MEASURES, "topk": TOPK, "experiment": exp},
           "setup": {k: {kk: v[kk] for kk in ("seconds", "peak_rss_mib", "disk_bytes", "cached")}
                     for k, v in setup.items()},
           "ours": ours, "reference": ref}
    if ours.get("status") == "ok" and ref.get("status") == "ok":
        out["agreement"] = agreement(ours, ref, pairs)
        out["speedup"] = round(ref["wall_seconds"] / ours["wall_seconds"], 3)
    return out


def main() -> None:
    args = parse_common(__doc__.splitlines()[0], options)
    threads = args.threads if args.threads is not None else 1  # the reference's measured setting
    classes = (args.classes or ("1SG,3SG,3PL" if args.smoke else "1SG,1PL,3SG,3PL")).split(",")
    rows = args.rows or (16 if args.smoke else 24)
    steps = args.steps or 8
    venv = Path(args.ref_venv).resolve()
    with Workdir(args.workdir) as wd:
        store = wd / "store"
        exp = experiment(args.smoke, wd, classes, rows, steps, args.lr)
        cfg_path = write_yaml(exp, wd / "suite.yaml")
        setup, manifests = setup_stages(cfg_path, store, wd, threads)
        load = {"before_ours": os.getloadavg()[0]}  # shared machine: the 1-minute load around each side
        log(f"our side: gradiend-flow run (a suite of {len(classes) * (len(classes) - 1) // 2} pairs)")
        try:
            ours = our_report(run_cli(cfg_path, store, threads=threads, prefect_home=wd / "prefect-home"), exp)
        except RuntimeError as e:  # still measure the reference: its numbers stand on their own
            ours = {"status": "failed", "reason": str(e)[-500:]}
        load["before_reference"] = os.getloadavg()[0]
        ref = reference_side(args, venv, exp, manifests, classes, wd, threads)
        load["after_reference"] = os.getloadavg()[0]
        emit(report(args, threads, load, exp, setup, manifests, ours, ref))


if __name__ == "__main__":
    main()
