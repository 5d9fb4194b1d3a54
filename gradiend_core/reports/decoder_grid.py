"""Report of decoder-grid: one probability-shift plot per class, the selected cells and the whole grid."""
from __future__ import annotations

from pathlib import Path

from .images import md_image, report_file
from .markdown import (artifact_key, fmt, header, info, interval, json_safe, main_key, md_table, out, read_json,
                       spec)

EXTRA = ("cells",)
CODE = ("gradiend_core.reports.decoder_grid", "gradiend_core.plots")


def plot_name(cls: str) -> str:
    return f"probability_shifts_{cls}.png"


def load_grid(directory: Path):
    """The stored grid (grid.parquet + grid.json, and the per-item scores where stored) as a
    decoder_eval.GridResult."""
    import pandas as pd

    from ..decoder_eval import GridResult
    from ..grid_stats import GridScores

    j = read_json(directory / "grid.json")
    scores = None
    if (directory / "lms_positions.parquet").is_file() and (directory / "row_probs.parquet").is_file():
        scores = GridScores.from_frames(pd.read_parquet(directory / "lms_positions.parquet"),
                                        pd.read_parquet(directory / "row_probs.parquet"), j["classes"],
                                        j["dataset_classes"])
    return GridResult(pd.read_parquet(directory / "grid.parquet"), j["base_lms"], j["summary"], j["classes"],
                      j["dataset_classes"], j["rows_per_class"], j["feature_factors"], j.get("config") or {}, scores)


def draw(m: dict, dest: Path) -> dict:
    from ..plots import plot_probability_shifts

    grid = load_grid(out(m))
    plots = {}
    for c in grid.feature_factors:
        plots[c] = plot_name(c)
        plot_probability_shifts(grid, dest / plots[c], c, grid.summary.get(c))
    return {"plots": plots}


def grid_summary_rows(grid: dict) -> list[dict]:
    """One row per selection metric ("<C>" strengthens C, "<C>_weaken"): the selected cell vs the base,
    with the paired bootstrap intervals of the metric's change and of the LMS difference."""
    rows = []
    for name, s in grid.get("summary", {}).items():
        value, base = s.get("value"), s.get("base_value")
        rows.append({"metric": name, "selected": "base model" if s.get("id") == "base" else "cell",
                     "feature_factor": s.get("feature_factor"), "learning_rate": s.get("learning_rate"),
                     "value": value, "base_value": base,
                     "change [CI]": interval(s.get("change"), s.get("change_lo"), s.get("change_hi")),
                     "rows": s.get("n_rows"), "lms": s.get("lms"), "base_lms": s.get("base_lms"),
                     "LMS diff [CI]": interval(s.get("lms_diff"), s.get("lms_diff_lo"), s.get("lms_diff_hi")),
                     "LMS p": s.get("lms_p")})
    return json_safe(rows)


def policy_text(cfg: dict) -> str:
    """The selection rule in words, e.g. "`lms_significance` (drop cells whose LMS is below the base's at
    one-sided p < 0.05)"."""
    policy = cfg.get("policy")
    if policy == "lms_threshold":
        return f"`{policy}` (keep cells with LMS >= {fmt(cfg.get('lms_ratio'))} x base)"
    if policy == "lms_significance":
        return (f"`{policy}` (drop cells whose LMS is below the base model's at paired bootstrap "
                f"p < {fmt(cfg.get('alpha'))})")
    return f"`{policy}`"


def _markdown(m: dict, grid: dict, report: dict | None) -> str:
    cfg = grid.get("config") or {}
    plots = info(report).get("plots") or {c: plot_name(c) for c in grid.get("feature_factors", {})}
    images = "\n\n".join(f"**Rewriting towards {c}** (feature factor {fmt(grid['feature_factors'].get(c))})\n\n"
                         + md_image(report_file(report, p), f"probability shifts {c}") for c, p in plots.items())
    level = fmt(100 * float(cfg.get("ci_level", 0.95)))
    return (header(m, "Decoder grid")
            + f"\nbase LMS **{fmt(grid.get('base_lms'))}** ({cfg.get('lms', 'accuracy')}, "
              f"{info(m).get('n_lms_positions', '?')} positions); rows per class: "
              f"{', '.join(f'{c}={n}' for c, n in (grid.get('rows_per_class') or {}).items())}; "
              f"selection policy {policy_text(cfg)}"
            + f"\n\nIntervals: {level}% paired bootstrap ({cfg.get('bootstrap', '?')} resamples): the change over "
              "the metric's rows and the LMS difference over the LMS positions, each against the base model "
              "on the same rows and positions."
            + "\n\n**Selected cell per metric**\n\n" + md_table(grid_summary_rows(grid)) + "\n\n" + images)


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    import pandas as pd

    grid = read_json(out(m) / "grid.json")
    table = pd.read_parquet(out(m) / "grid.parquet")
    cells = json_safe(table.to_dict(orient="records"))
    n = len(table) - int(table["is_base"].sum()) if "is_base" in table else len(table)
    desc = f"{n} grid cells + base, base LMS {fmt(grid.get('base_lms'))}"
    return [spec("markdown", main_key(m, exp), _markdown(m, grid, report), desc),
            spec("table", artifact_key(exp, m["stage"], "cells"), cells, "every (feature factor, learning rate) cell")]
