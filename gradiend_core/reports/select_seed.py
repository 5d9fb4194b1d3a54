"""Report of select-seed: every candidate seed's metrics, the winner, and the winner's convergence plot."""
from __future__ import annotations

from pathlib import Path

from .images import md_image, report_file
from .markdown import artifact_key, fmt, header, info, json_safe, main_key, md_table, out, read_json, spec
from .train_seed import PLOT, draw_convergence

EXTRA = ("runs",)
CODE = ("gradiend_core.reports.train_seed", "gradiend_core.plots")


def draw(m: dict, dest: Path) -> dict:
    return draw_convergence(out(m) / "stats.json", info(m).get("classes"), dest)


def seed_table(report: dict) -> list[dict]:
    """Every candidate seed's selection metrics; the winner marked."""
    rows = []
    for r in report["runs"]:
        means = r.get("mean_by_class") or {}
        rows.append({"seed": r["seed"], "selected": r["seed"] == report["best_seed"],
                     "convergent": r.get("converged"), "trained_converged": r.get("trained_converged"),
                     "best_step": r.get("best_step"), "best_correlation": r.get("best_correlation"),
                     "eval_correlation": r.get("eval_correlation"), "mean_pos": means.get("1"),
                     "mean_neg": means.get("-1"), "selection_score": r.get("selection_score")})
    return json_safe(rows)


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    sr = read_json(out(m) / "seed_report.json")
    rows = seed_table(sr)
    marked = [{**r, "selected": "★ winner" if r["selected"] else ""} for r in rows]
    md = (header(m, "Seed selection")
          + f"\nbest seed **{sr['best_seed']}** (strategy `{sr['strategy']}`), "
            f"{sr['convergent_count']} of {len(rows)} seeds convergent "
            f"(threshold {fmt(sr.get('threshold'))}, mean threshold {fmt(sr.get('mean_threshold'))}).\n\n"
          + md_table(marked) + "\n\n**Winner's training convergence**\n\n"
          + md_image(report_file(report, PLOT), "training convergence of the selected seed"))
    return [spec("markdown", main_key(m, exp), md, f"best seed {sr['best_seed']}"),
            spec("table", artifact_key(exp, m["stage"], "runs"), rows, "every trained seed; selected = winner")]
