"""decoder-policies: which decoder-grid selection policy picks cells that hold up on data the grid did not see.

    .venv/bin/python bench/decoder_policies.py [--smoke] [--store DIR] [--experiments A.yaml,B.yaml]
                                               [--heldout-rows 200] [--heldout-texts 300] [--workdir DIR]

For each experiment (default: the built-in pronoun_number and gender on the packaged MiniLM) the decoder
grid is taken from the store (`run_plan` up to decoder-grid: every upstream output is reused, the grid is
scored if this code's grid is not there yet), once with `decoder_grid.lms: accuracy` and once with
`log_prob`. Each policy variant then selects a cell per strengthen metric ("<C>": P(C) on the other
class's rows), and that cell is scored again on held-out data:

- held-out rows: rows of the built-in data set that create-data did not pick (their `masked` text is in
  none of the stored train/validation/test rows), up to --heldout-rows per class (seeded sample);
- held-out texts: built-in neutral texts that are not among the stored neutral texts (the LMS used the
  first `decoder_grid.lms_max_texts` of those), up to --heldout-texts.

Reported per selected cell (strengthen "<C>" and weaken "<C>_weaken" metrics): the grid's numbers (metric
change, LMS, lms_p) and the held-out effect (strengthen: change of mean P(C) on the other class's held-out
rows; weaken: change of 1 - P(C) on C's held-out rows; vs the base model on the same rows, paired bootstrap
CI over rows) and held-out LMS (accuracy and log_prob, the difference vs the base model with its paired CI
and p-value over positions); `aggregate`: per variant, how many picks keep the held-out accuracy LMS (not
significantly below the base's and >= 0.99 x base) and the held-out effects. One JSON object on stdout.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Workdir, emit, log, machine, tiny_experiment, tiny_model_dir, write_yaml  # noqa: E402

VARIANTS = {  # name -> (decoder_grid.lms, policy, policy options)
    "threshold (reference)": ("accuracy", "lms_threshold", {"lms_ratio": 0.99}),
    "significance": ("accuracy", "lms_significance", {"alpha": 0.05}),
    "significance, log_prob": ("log_prob", "lms_significance", {"alpha": 0.05}),
    "threshold, log_prob": ("log_prob", "lms_threshold", {"lms_ratio": 0.99}),
    "times_metric": ("accuracy", "lms_times_metric", {}),
}
DEFAULT_EXPERIMENTS = ["examples/pronoun_number.yaml", "examples/gender.yaml"]


def grid_runs(cfg, store) -> dict:
    """lms kind -> (plan manifests up to decoder-grid, the stored GridResult)."""
    from gradiend_core.reports.decoder_grid import load_grid
    from gradiend_core.stages.plan import plan, run_plan

    out = {}
    for kind in sorted({v[0] for v in VARIANTS.values()}):
        c = dataclasses.replace(cfg, decoder_grid=dataclasses.replace(cfg.decoder_grid, lms=kind))
        log(f"{cfg.name}: decoder grid with lms={kind}")
        done = run_plan(store, plan(c), until="decoder-grid")
        out[kind] = (done, load_grid(Path(done["decoder-grid"]["path"])))
    return out


def selections(runs: dict) -> dict:
    """variant -> metric -> the selected summary entry."""
    from gradiend_core.decoder_eval import DecoderGridConfig, summarize

    out = {}
    for name, (kind, policy, options) in VARIANTS.items():
        grid = runs[kind][1]
        cfg = DecoderGridConfig(**{**grid.config, "policy": policy, **options})
        summary = summarize(grid, cfg)
        out[name] = summary
    return out


def heldout_rows(cfg, data_dir: Path, per_class: int):
    """Rows of the built-in data set that create-data did not pick, a seeded sample per class."""
    import pandas as pd

    from gradiend_core.data.corpus import corpus_texts
    from gradiend_core.data.creation import create_training_data, read_dataset

    used, _ = read_dataset(data_dir)
    data = dataclasses.replace(cfg.data.resolved(), max_per_class=None, balance="none")
    full = create_training_data(corpus_texts(cfg.data), data)
    fresh = full[~full["masked"].isin(set(used["masked"])) & ~full["text"].isin(set(used["text"]))]
    parts = [g.sample(n=min(per_class, len(g)), random_state=cfg.decoder_grid.seed)
             for _, g in fresh.groupby("factual_class", sort=False)]
    return pd.concat(parts).reset_index(drop=True)


def heldout_texts(cfg, data_dir: Path, n: int) -> list[str]:
    from gradiend_core.data.corpus import neutral_texts
    from gradiend_core.data.creation import read_dataset

    _, used = read_dataset(data_dir)
    seen = set(used["text"])
    return [t for t in neutral_texts(cfg.data) if t not in seen][:n]


def score_cells(done: dict, cells: list[tuple[float, float]], rows, texts: list[str], class_words: dict, seed: int,
                part: str) -> dict:
    """Per-item scores of the base model and each cell on the held-out data: accuracy and log_prob LMS
    values (R, n) and P(class) per row (R, N, C); row 0 is the base model."""
    import numpy as np

    from gradiend_core.checkpoint import load_gradiend
    from gradiend_core.decoder_eval import prepare_probability_rows, score_probabilities
    from gradiend_core.lms import lms_values, prepare_lms
    from gradiend_core.manifests import load_prepared_model, out_path

    base = load_prepared_model(done["prepare-model"])
    model_step = "post-prune" if "post-prune" in done else "select-seed"
    g = load_gradiend(out_path(done[model_step]) / "model", expected_digest=base.digest)
    prepared = prepare_probability_rows(base.tokenizer, base.objective, rows, class_words)
    lms = prepare_lms(base.tokenizer, texts, base.objective, seed=seed)
    acc, logp, probs = [], [], []

    def score():
        acc.append(lms_values(base.model, lms, "accuracy").numpy())
        logp.append(lms_values(base.model, lms, "log_prob").numpy())
        probs.append(score_probabilities(base.model, prepared).numpy())

    score()
    for i, (ff, lr) in enumerate(cells, start=1):
        log(f"  held-out scoring of cell {i}/{len(cells)}: ff={ff:g} lr={lr:g}")
        with g.applied(base.model, lr=lr, feature_factor=ff, part=part):
            score()
    return {"accuracy": np.stack(acc), "log_prob": np.stack(logp), "probs": np.stack(probs),
            "row_dataset": prepared.row_dataset.numpy(), "classes": prepared.classes,
            "dataset_classes": prepared.dataset_classes, "objective": base.objective}


def heldout_numbers(scored: dict, row: int, metric: str, resamples: int, seed: int) -> dict:
    """The held-out effect of table row `row` on `metric` ("<C>": P(C) on the other classes' rows;
    "<C>_weaken": 1 - P(C) on C's rows) and its LMS differences."""
    from gradiend_core.grid_stats import Bootstrap, GridScores

    obj, out = scored["objective"], {}
    for kind in ("accuracy", "log_prob"):
        gs = GridScores(scored[kind], scored["probs"], scored["row_dataset"])
        d = Bootstrap(gs, resamples, seed, 0.95).lms_diff(lambda m, k=kind: obj.lms_from_mean(m, k))
        v = scored[kind]
        out[f"lms_{kind}"] = {"base": float(obj.lms_from_mean(v[0].mean(), kind)),
                              "cell": float(obj.lms_from_mean(v[row].mean(), kind)), "diff": float(d["diff"][row]),
                              "lo": float(d["lo"][row]), "hi": float(d["hi"][row]), "p": float(d["p"][row])}
    boot = Bootstrap(GridScores(scored["accuracy"], scored["probs"], scored["row_dataset"]), resamples, seed, 0.95)
    cls, strengthen = metric.removesuffix("_weaken"), not metric.endswith("_weaken")
    datasets = [i for i, d in enumerate(scored["dataset_classes"]) if (d != cls) == strengthen]
    ch = boot.change(scored["classes"].index(cls), datasets)
    sign = 1.0 if strengthen else -1.0  # weakening: the change of 1 - P(C)
    lo, hi = sorted((sign * float(ch["lo"][row]), sign * float(ch["hi"][row])))
    sel = [i for i, d in enumerate(scored["row_dataset"]) if d in datasets]
    p0 = float(scored["probs"][0][sel, scored["classes"].index(cls)].mean())
    out["effect"] = {"base_value": p0 if strengthen else 1.0 - p0, "change": sign * float(ch["diff"][row]),
                     "lo": lo, "hi": hi, "n_rows": len(sel)}
    return out


def aggregate(table: list[dict], alpha: float = 0.05) -> dict:
    """Per variant: how many picks keep the held-out LMS (accuracy not significantly below the base's at
    `alpha`, and >= 0.99 x base), and the held-out effects of all picks and of the picks that keep it."""
    out = {}
    for name in VARIANTS:
        rows = [t for t in table if t["variant"] == name]
        keeps = [t for t in rows if t["heldout"]["lms_accuracy"]["p"] >= alpha
                 and t["heldout"]["lms_accuracy"]["cell"] >= 0.99 * t["heldout"]["lms_accuracy"]["base"]]
        out[name] = {"picks": len(rows), "keep_heldout_lms": len(keeps),
                     "mean_effect": sum(t["heldout"]["effect"]["change"] for t in rows) / max(1, len(rows)),
                     "sum_effect_where_kept": sum(t["heldout"]["effect"]["change"] for t in keeps),
                     "worst_heldout_lms_ratio": min(t["heldout"]["lms_accuracy"]["cell"]
                                                    / max(t["heldout"]["lms_accuracy"]["base"], 1e-12) for t in rows)}
    return out


def experiment_report(cfg, store, args) -> dict:
    from gradiend_core.manifests import info, out_path

    runs = grid_runs(cfg, store)
    picks = selections(runs)
    done = runs["accuracy"][0]
    cells = sorted({(s["feature_factor"], s["learning_rate"]) for v in picks.values() for s in v.values()
                    if s["id"] != "base"})
    rows = heldout_rows(cfg, out_path(done["create-data"]), args.heldout_rows)
    texts = heldout_texts(cfg, out_path(done["create-data"]), args.heldout_texts)
    log(f"{cfg.name}: {len(cells)} distinct selected cells; held-out {len(rows)} rows, {len(texts)} texts")
    class_words = dict(info(done["create-data"])["classes"])
    scored = score_cells(done, cells, rows, texts, class_words, cfg.decoder_grid.seed, cfg.decoder_grid.part)
    table = []
    for name, by_metric in picks.items():
        for metric, s in by_metric.items():
            row = 0 if s["id"] == "base" else 1 + cells.index((s["feature_factor"], s["learning_rate"]))
            table.append({"variant": name, "metric": metric, "feature_factor": s["feature_factor"],
                          "learning_rate": s["learning_rate"],
                          "grid": {k: s.get(k) for k in ("value", "base_value", "change", "change_lo", "change_hi",
                                                         "lms", "base_lms", "lms_diff", "lms_p", "n_rows")},
                          "heldout": heldout_numbers(scored, row, metric, cfg.decoder_grid.bootstrap,
                                                     cfg.decoder_grid.seed)})
    grid = runs["accuracy"][1]
    return {"name": cfg.name, "n_lms_positions": int(grid.scores.lms_values.shape[1]),
            "rows_per_class": grid.rows_per_class, "heldout_rows": int(len(rows)), "heldout_texts": len(texts),
            "heldout_lms_positions": int(scored["accuracy"].shape[1]), "selections": table}


def configs(args, wd: Path) -> list:
    from gradiend_core.experiment import load_experiment

    if args.smoke:
        return [load_experiment(write_yaml(tiny_experiment(tiny_model_dir(wd)), wd / "tiny.yaml"))]
    return [load_experiment(ROOT / p) for p in args.experiments.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--store", default=None, help="the store the experiments ran in (default: WORKDIR/store)")
    p.add_argument("--experiments", default=",".join(DEFAULT_EXPERIMENTS))
    p.add_argument("--heldout-rows", type=int, default=200, help="held-out rows per class")
    p.add_argument("--heldout-texts", type=int, default=300, help="held-out neutral texts")
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    if args.smoke:
        args.heldout_rows, args.heldout_texts = min(args.heldout_rows, 12), min(args.heldout_texts, 12)
    from gradiend_core.store import LocalStore

    with Workdir(args.workdir) as wd:
        store = LocalStore(args.store or wd / "store")
        reports = [experiment_report(cfg, store, args) for cfg in configs(args, wd)]
    every = [dict(t, experiment=r["name"]) for r in reports for t in r["selections"]]
    emit({"bench": "decoder-policies", "smoke": args.smoke, "machine": machine(), "experiments": reports,
          "aggregate": {"strengthen": aggregate([t for t in every if not t["metric"].endswith("_weaken")]),
                        "all_metrics": aggregate(every)},
          "variants": {k: {"lms": v[0], "policy": v[1], **v[2]} for k, v in VARIANTS.items()}})


if __name__ == "__main__":
    main()
