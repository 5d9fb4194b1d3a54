"""Report of train-seed (and of select-seed's winner): the training convergence plot and its summary."""
from __future__ import annotations

from pathlib import Path

from .images import md_image, report_file
from .markdown import fmt, header, info, main_key, md_table, out, read_json, spec

PLOT = "training_convergence.png"
CODE = ("gradiend_core.reports.train_seed", "gradiend_core.plots")


def draw_convergence(stats_path: Path, classes: list[str] | None, dest: Path) -> dict:
    """The convergence plot of one training run's stats.json (nothing without in-training evaluation)."""
    stats = read_json(stats_path)
    if not stats.get("eval_steps"):
        return {"plots": []}
    from ..plots import plot_training_convergence

    names = {"1": classes[0], "-1": classes[1]} if classes and len(classes) >= 2 else None
    plot_training_convergence(stats, dest / PLOT, class_names=names)
    return {"plots": [PLOT]}


def draw(m: dict, dest: Path) -> dict:
    return draw_convergence(out(m) / "stats.json", info(m).get("classes"), dest)


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    i = info(m)
    stats = read_json(out(m) / "stats.json") if (out(m) / "stats.json").is_file() else {}
    best = stats.get("best") or i.get("best") or {}
    means = best.get("mean_by_class") or {}
    rows = [{"field": "seed", "value": i.get("seed")}, {"field": "steps", "value": stats.get("steps", i.get("steps"))},
            {"field": "evaluations", "value": len(stats.get("eval_steps") or [])},
            {"field": "best step", "value": best.get("step")},
            {"field": "best correlation", "value": best.get("correlation")},
            {"field": "mean encoded (+1 class)", "value": means.get("1")},
            {"field": "mean encoded (-1 class)", "value": means.get("-1")},
            {"field": "converged", "value": stats.get("converged", i.get("converged"))},
            {"field": "training time", "value": f"{float(i.get('seconds') or m.get('seconds') or 0):.1f} s"}]
    md = (header(m, f"Training, seed {i.get('seed')}") + "\n" + md_table(rows) + "\n\n"
          + md_image(report_file(report, PLOT), "training convergence"))
    return [spec("markdown", main_key(m, exp), md, f"seed {i.get('seed')}: best r={fmt(best.get('correlation'))}")]
