"""compare-reference: gradiend-flow against the original library (gradiend==0.2.3) on the same work.

    .venv/bin/python bench/compare_reference.py [--smoke] [--threads 1] [--workdir DIR] [--ref-venv DIR]

Same work on both sides: the model directory written by our prepare-model (the MiniLM with its fitted
head), the rows written by our create-data (exported to the reference's merged table), the same seed,
steps, base batch size, learning rate, eval interval, encoder/decoder evaluation sizes, decoder
learning-rate grid and pre-prune setting. Model preparation and data creation run once, before both
sides, and are reported under `setup` (the reference gets their outputs as inputs), as is creating
Prefect's API database in the run's fresh PREFECT_HOME (once per installation: ~4 s of the first run
of a home migrating an empty SQLite database, which no later run pays).

The reference runs as `bench/.ref-venv/bin/python bench/reference_runner.py` (a subprocess; the venv is
created on first use in full mode: torch==2.13.0 first, so the local CPU wheel is used, then
gradiend==0.2.3). Smoke mode never installs it: without a ready venv the reference side is reported as
skipped, with the reason.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (BENCH, PY, ROOT, Workdir, dir_size, emit, log, machine, parse_common, run_cli,  # noqa: E402
                     run_measured, run_stage_isolated, thread_env, tiny_experiment, tiny_model_dir, write_yaml)

REF_VENV = BENCH / ".ref-venv"
REF_PINS = ["torch==2.13.0", "gradiend==0.2.3", "transformers==5.23.0"]
DEFAULT_DECODER_LRS = [1e-2, 1e-3, 1e-4]


def prepared_model_dir(manifest: dict) -> Path:
    """The directory downstream stages load (the fitted copy, or the source model when no head was fitted)."""
    from gradiend_core.manifests import model_dir

    return Path(model_dir(manifest))


def ref_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ref_ready(venv: Path) -> str | None:
    """None when the venv can import the reference; else why not."""
    py = ref_python(venv)
    if not py.exists():
        return f"no reference venv at {venv} (full mode creates it; smoke mode never installs it)"
    r = subprocess.run([str(py), "-c", "import gradiend, torch"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"{venv} cannot import gradiend: {r.stderr.strip()[-200:]}"


def ensure_ref_venv(venv: Path) -> None:
    """Create the venv and install the pins (torch first: the local CPU wheel satisfies it)."""
    if ref_ready(venv) is None:
        return
    base = getattr(sys, "_base_executable", sys.executable)
    log(f"creating {venv} and installing {' '.join(REF_PINS)} (minutes)")
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(ref_python(venv)), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [REF_PINS[0]], check=True, stdout=sys.stderr)
    subprocess.run(pip + REF_PINS[1:], check=True, stdout=sys.stderr)
    why = ref_ready(venv)
    if why:
        raise RuntimeError(why)


# ------------------------------------------------------------------------------------------ same work

def experiment(smoke: bool, wd: Path, lrs: list[float], pre_prune: bool, seeds: int) -> dict:
    """Our side's experiment; every value the reference side needs is read back from it."""
    if smoke:
        e = tiny_experiment(tiny_model_dir(wd))
        e["train"].update(max_seeds=seeds, seed=0, base_batch_size=2)
        e["decoder_grid"]["learning_rates"] = lrs
        e["pre_prune"]["enabled"] = pre_prune
        return e
    return {
        "name": "bench-compare",
        "data": {"builtin": "pronoun_number", "max_per_class": 150, "neutral_max": 60},
        # every backbone tensor, word embeddings included: the reference's GRADIEND input (22.6M dims)
        "extract": {"max_neutral_rows": 30, "exclude": []},
        "pre_prune": {"enabled": pre_prune, "n_samples": 8, "topk": 0.1, "source": "alternative"},
        "train": {"base_batch_size": 2, "batch_size": 1, "max_steps": 100, "eval_steps": 25,
                  # the reference's default lr; at 1e-3 both sides saturate tanh within 25 steps and
                  # neither converges (measured: reference 0.42 -> -0.19 -> 0.0 -> 0.27), so no quality comparison
                  "learning_rate": 1e-5, "seed": 0, "max_seeds": seeds},
        "decoder_grid": {"learning_rates": lrs, "max_rows_per_class": 30, "lms_max_texts": 60},
    }


def export_reference_data(data_dir: Path, out: Path) -> tuple[Path, Path]:
    """Our create-data rows as the reference's merged table (+ its neutral `text` table)."""
    from gradiend_core.data.creation import read_dataset

    training, neutral = read_dataset(data_dir)
    # the reference's `label` is the factual word (ours is the +1/-1 class label, not needed there)
    ref = training.drop(columns=["label"]).rename(columns={"factual_class": "label_class", "factual": "label"})
    ref["transition"] = ref["label_class"] + "\u2192" + ref["alternative_class"]
    ref = ref[["masked", "split", "label_class", "label", "alternative", "alternative_class", "transition"]]
    out.mkdir(parents=True, exist_ok=True)
    t, n = out / "training.csv", out / "neutral.csv"  # CSV: the reference's own format (no pyarrow there)
    ref.to_csv(t, index=False)
    neutral[["text"]].to_csv(n, index=False)
    return t, n


def reference_job(exp: dict, model_dir: str, classes: list[str], files: tuple[Path, Path], out: Path,
                  threads: int | None) -> dict:
    from gradiend_core.config_loader import from_dict
    from gradiend_core.experiment import ExperimentConfig

    cfg = from_dict(ExperimentConfig, exp, "")
    t, pp, x, g = cfg.train, cfg.pre_prune, cfg.extract, cfg.decoder_grid
    return {
        "model_dir": model_dir, "training": str(files[0]), "neutral": str(files[1]),
        "experiment_dir": str(out), "classes": classes, "threads": threads,
        "source": t.source, "target": t.target, "batch_size": t.base_batch_size, "max_steps": t.max_steps,
        "eval_steps": t.eval_steps, "learning_rate": t.learning_rate, "seed": t.seed, "max_seeds": t.max_seeds,
        "encoder_eval_max_size": x.max_neutral_rows,
        "decoder_lrs": g.learning_rates, "decoder_max_rows": g.max_rows_per_class,
        "decoder_lms_texts": g.lms_max_texts,
        "pre_prune": {"n_samples": pp.n_samples, "topk": pp.topk, "source": pp.source} if pp.enabled else None,
    }


def run_reference(venv: Path, job: dict, wd: Path, threads: int | None, timeout: float | None,
                  runner: str = "reference_runner.py") -> dict:
    """`runner` (a script in bench/) on the job, by the reference venv's python; its JSON + wall time, RSS."""
    job_path = wd / "reference-job.json"
    job_path.write_text(json.dumps(job, indent=1))
    log(f"running the reference (its own venv): {runner}")
    m = run_measured([str(ref_python(venv)), str(BENCH / runner), str(job_path)],
                     env=thread_env(threads), cwd=wd, timeout=timeout)
    if m.rc != 0:
        tail = (m.stderr.strip().splitlines() or ["?"])[-1]
        return {"status": "failed", "reason": f"rc={m.rc}: {tail[-300:]}", "wall_seconds": round(m.seconds, 2)}
    r = m.last_json()
    r.update(wall_seconds=round(m.seconds, 2), process_peak_rss_mib=round(m.peak_rss_mib, 1))
    return r


# ------------------------------------------------------------------------------------------- report

def prefect_database(home: Path, threads: int | None) -> dict:
    """Create Prefect's API database in `home` the way a first run does (start the local API, which
    migrates it, then stop), so the timed run pays what every later run pays."""
    code = "from flows import env, local_api; env.apply(); local_api.ready(local_api.start()).stop()"
    m = run_measured([PY, "-c", code], env=thread_env(threads, {"PREFECT_HOME": str(home)}), cwd=ROOT)
    if m.rc != 0:
        raise RuntimeError(f"creating Prefect's database failed (rc={m.rc}): {m.stderr.strip().splitlines()[-1:]}")
    return {"seconds": round(m.seconds, 2), "peak_rss_mib": round(m.peak_rss_mib, 1), "disk_bytes": dir_size(home),
            "cached": False}


def setup_stages(cfg_path: Path, store: Path, wd: Path, threads: int | None) -> tuple[dict, dict]:
    """prepare-model and create-data once (both sides' inputs), and Prefect's database."""
    from gradiend_core.store import LocalStore

    setup = {}
    for sid in ("prepare-model", "create-data"):
        log(f"setup: {sid}")
        setup[sid] = run_stage_isolated(cfg_path, store, sid, threads=threads)
    log("setup: prefect-database")
    setup["prefect-database"] = prefect_database(wd / "prefect-home", threads)
    s = LocalStore(store)
    return setup, {sid: s.load(sid, setup[sid]["key"]) for sid in ("prepare-model", "create-data")}


def our_report(run: dict, setup_ids: list[str], store: Path, setup_dirs: list[Path]) -> dict:
    s = run["summary"]
    stages = {k: v["seconds"] for k, v in s["stages"].items()}
    disk = dir_size(store) - sum(dir_size(d) for d in setup_dirs)
    return {"status": "ok", "wall_seconds": run["wall_seconds"], "flow_seconds": s["seconds"],
            "stage_seconds": stages, "ran": run["ran"], "cached": run["cached"],
            "peak_rss_mib": run["peak_rss_mib"], "disk_bytes": disk,
            "encoder": {"correlation": s["metrics"]["encoder_correlation"], "split": s["metrics"]["encoder_split"]},
            "selected": s["metrics"]["selected"], "best_seed": s["metrics"]["best_seed"]}


def aligned(ours: dict, ref: dict) -> dict:
    """The reference's steps next to the flow stages doing the same work (seconds, ours / reference)."""
    st = ours["stage_seconds"]
    train_ids = [k for k in st if k in ("extract-gradients", "pre-prune", "select-seed", "post-prune")
                 or k.startswith("train-seed")]
    pairs = {"train (gradients + pre-prune + training + seed selection)": (sum(st[k] for k in train_ids),
                                                                            ref["seconds"].get("train")),
             "evaluate_encoder": (st.get("evaluate-encoder"), ref["seconds"].get("evaluate_encoder")),
             "decoder grid": (st.get("decoder-grid"), ref["seconds"].get("evaluate_decoder")),
             "rewrite": (sum(v for k, v in st.items() if k.startswith("rewrite-")) or None,
                         ref["seconds"].get("rewrite"))}
    return {k: {"ours": None if a is None else round(a, 2), "reference": b,
                "speedup": round(b / a, 2) if a and b else None} for k, (a, b) in pairs.items()}


def ratios(ours: dict, ref: dict) -> dict:
    def r(a, b):
        return round(a / b, 3) if a and b else None

    oc, rc = ours["encoder"]["correlation"], ref["encoder"]["correlation"]
    speedup = r(ref["wall_seconds"], ours["wall_seconds"])
    return {
        "end_to_end_speedup": speedup,
        "peak_rss_ratio_ours_over_ref": r(ours["peak_rss_mib"], ref.get("process_peak_rss_mib")),
        "disk_ratio_ours_over_ref": r(ours["disk_bytes"], ref.get("disk_bytes")),
        "encoder_correlation_delta": None if oc is None or rc is None else round(oc - rc, 4),
        "meets_speed_target": bool(speedup and speedup >= 10),
        "meets_quality_target": bool(oc is not None and rc is not None and oc >= rc - 0.02),
    }


def main() -> None:
    args = parse_common(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--ref-venv", default=str(REF_VENV), help="the reference's venv (default bench/.ref-venv)"),
        p.add_argument("--no-reference", action="store_true", help="run only our side"),
        p.add_argument("--decoder-lrs", default=None, help="comma-separated decoder learning rates"),
        p.add_argument("--pre-prune", choices=["on", "off"], default="on", help="on both sides (default on)"),
        p.add_argument("--seeds", type=int, default=1, help="max_seeds on both sides (default 1)"),
        p.add_argument("--ref-timeout", type=float, default=None, help="seconds before the reference is killed")))
    threads = args.threads if args.threads is not None else 1  # the reference's measured setting
    lrs = ([float(v) for v in args.decoder_lrs.split(",")] if args.decoder_lrs
           else ([1.0, 0.1] if args.smoke else DEFAULT_DECODER_LRS))
    venv = Path(args.ref_venv).resolve()
    from gradiend_core.manifests import info

    with Workdir(args.workdir) as wd:
        store = wd / "store"
        exp = experiment(args.smoke, wd, lrs, args.pre_prune == "on", args.seeds)
        cfg_path = write_yaml(exp, wd / "compare.yaml")
        setup, manifests = setup_stages(cfg_path, store, wd, threads)
        model_dir = str(prepared_model_dir(manifests["prepare-model"]))
        labels = info(manifests["create-data"])["labels"]  # class -> +1 / -1 (manifest keys are sorted)
        classes = sorted(labels, key=lambda c: -labels[c])
        log("our side: gradiend-flow run")
        try:
            ours = our_report(run_cli(cfg_path, store, threads=threads, prefect_home=wd / "prefect-home"),
                              list(manifests), store, [Path(m["path"]) for m in manifests.values()])
        except RuntimeError as e:  # still measure the reference: its numbers stand on their own
            ours = {"status": "failed", "reason": str(e)[-500:]}
        if args.no_reference:
            ref = {"status": "skipped", "reason": "--no-reference given"}
        elif args.smoke and ref_ready(venv) is not None:
            ref = {"status": "skipped", "reason": ref_ready(venv)}
        else:
            ensure_ref_venv(venv)
            files = export_reference_data(Path(manifests["create-data"]["path"]), wd / "reference-data")
            job = reference_job(exp, model_dir, classes, files, wd / "reference-run", threads)
            ref = run_reference(venv, job, wd, threads, args.ref_timeout or (180 if args.smoke else None))
        out = {"bench": "compare-reference", "smoke": args.smoke, "machine": machine(), "threads": threads,
               "same_work": {"model_dir": model_dir, "classes": classes, "experiment": exp},
               "setup": {k: {kk: v[kk] for kk in ("seconds", "peak_rss_mib", "disk_bytes", "cached")}
                         for k, v in setup.items()},
               "ours": ours, "reference": ref,
               "targets": {"end_to_end_speedup_min": 10, "encoder_correlation_max_drop": 0.02}}
        if ref.get("status") == "ok" and ours.get("status") == "ok":
            out["ratios"] = ratios(ours, ref)
            out["per_stage"] = aligned(ours, ref)
        emit(out)


if __name__ == "__main__":
    main()
