"""PNG plots of training, encoder and decoder results (matplotlib Agg canvas, no display, no pyplot state).

Each `plot_*` builds its figure with the matching `*_figure` function (so callers and tests can inspect
titles, labels and legends), writes a PNG atomically and returns the path.
"""
from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from gradiend_core.errors import DataError
from gradiend_core.io import atomic_write_bytes

# matplotlib's text/mathtext machinery is not thread-safe; stages plot from several task threads.
_PLOT_LOCK = threading.Lock()

BOUNDARY = 0.5  # encoder decision boundaries at +-0.5 (reference)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Render `fig` to PNG bytes and write them atomically. The figures lay themselves out
    (tight_layout, which counts titles and outside legends), so no second "tight" bbox pass."""
    return atomic_write_bytes(path, save_figure_bytes(fig, dpi))


def warm_up() -> None:
    """Render a tiny figure once, loading fonts and glyph caches: the first plot of a process cost
    ~0.45 s more than later ones (and importing this module ~0.65 s). Stages call it on a background
    thread while they compute, so their plot at the end does not pay it."""
    with _PLOT_LOCK:  # like every plot: text layout is not thread-safe
        fig = Figure(figsize=(1, 1))
        ax = fig.subplots()
        ax.plot([1, 2], [1, 10])
        ax.set(title="warm-up", xlabel="x", ylabel="y", yscale="log")
        save_figure_bytes(fig, dpi=30)


def save_figure_bytes(fig: Figure, dpi: int = 120) -> bytes:
    """`fig` as PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _floats(xs) -> np.ndarray:
    return np.array([np.nan if x is None else float(x) for x in xs], dtype=float)


# ----------------------------------------------------------------------------- training convergence

def _check_stats(stats: Mapping) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    steps = _floats(stats.get("eval_steps") or [])
    if steps.size == 0:
        raise DataError("training stats have no eval_steps; train with evaluation on before plotting convergence")
    corr = _floats(stats.get("correlation") or [])
    means = {str(k): _floats(v) for k, v in (stats.get("mean_by_class") or {}).items()}
    for name, arr in [("correlation", corr)] + [(f"mean_by_class[{k}]", v) for k, v in means.items()]:
        if arr.size != steps.size:
            raise DataError(f"training stats {name} has {arr.size} values for {steps.size} eval_steps; "
                            "pass one value per evaluation")
    return steps, corr, means, _floats(stats.get("loss") or [])


def training_convergence_figure(stats: Mapping, class_names: Mapping[str, str] | None = None) -> Figure:
    class_names = {"1": "3SG", "-1": "3PL"} if class_names is None else {str(k): v for k, v in class_names.items()}
    steps, corr, means, loss = _check_stats(stats)
    fig = Figure(figsize=(8, 9))
    ax_c, ax_m, ax_l = fig.subplots(3, 1)
    fig.suptitle("GRADIEND training convergence")

    ax_c.plot(steps, corr, marker="o", color="tab:blue", label="validation correlation (encoded vs. label)")
    best = stats.get("best") or {}
    if best.get("step") is not None:
        ax_c.axvline(best["step"], color="tab:red", ls="--", lw=1)
        ax_c.plot([best["step"]], [best.get("correlation", np.nan)], marker="*", ms=14, color="tab:red", ls="",
                  label=f"best checkpoint (step {best['step']}, r={float(best.get('correlation', np.nan)):.3f})")
    ax_c.set(title="Encoder correlation per evaluation", xlabel="training step", ylabel="Pearson correlation")
    ax_c.legend(loc="best", fontsize=8)

    for key, vals in means.items():
        name = class_names.get(key, key)
        ax_m.plot(steps, vals, marker="o", label=f"{name} (label {key})")
    ax_m.axhline(0.0, color="grey", lw=0.8, ls=":")
    ax_m.set(title="Mean encoded value per class", xlabel="training step", ylabel="mean encoded value")
    if means:
        ax_m.legend(loc="best", fontsize=8, title="class")
    else:
        ax_m.text(0.5, 0.5, "no class means recorded", ha="center", va="center", transform=ax_m.transAxes)

    if loss.size:
        ax_l.plot(np.arange(1, loss.size + 1), loss, color="tab:green", lw=1, label="training MSE loss")
        finite = loss[np.isfinite(loss)]
        if finite.size and (finite > 0).all():
            ax_l.set_yscale("log")
        ax_l.legend(loc="best", fontsize=8)
    else:
        ax_l.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax_l.transAxes)
    ax_l.set(title="Training loss per step", xlabel="training step", ylabel="loss")
    fig.tight_layout()
    return fig


def plot_training_convergence(stats: Mapping, path: str | Path,
                              class_names: Mapping[str, str] | None = None) -> Path:
    """Correlation (best step marked), class means per evaluation, and loss per step -> PNG."""
    with _PLOT_LOCK:
        return save_figure(training_convergence_figure(stats, class_names), path)


# ----------------------------------------------------------------------------- encoder distributions

def _group_order(groups: list[str]) -> list[str]:
    """Classes first (order of appearance), neutral groups last."""
    return sorted(dict.fromkeys(groups), key=lambda g: ("neutral" in g.lower(), groups.index(g)))


def _draw_groups(ax, df: pd.DataFrame, order: list[str], colors: dict) -> None:
    rng = np.random.default_rng(0)  # jitter only; fixed so the image is reproducible
    for i, g in enumerate(order):
        vals = df.loc[df["group"] == g, "encoded"].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            continue
        if vals.size >= 2 and np.ptp(vals) > 0:
            parts = ax.violinplot([vals], positions=[i], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(colors[g])
                body.set_alpha(0.35)
        ax.scatter(i + rng.uniform(-0.12, 0.12, vals.size), vals, s=8, color=colors[g], alpha=0.7)
        ax.plot([i - 0.3, i + 0.3], [vals.mean()] * 2, color="black", lw=2)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([f"{g}\n(n={int((df['group'] == g).sum())})" for g in order], fontsize=8)
    for b in (-BOUNDARY, BOUNDARY):
        ax.axhline(b, color="tab:red", ls="--", lw=1)
    ax.axhline(0.0, color="grey", ls=":", lw=0.8)


def encoder_distributions_figure(df: pd.DataFrame, order: list[str] | None = None,
                                 title: str = "Distribution of GRADIEND encoded values per group") -> Figure:
    if df is None or len(df) == 0:
        raise DataError("no encoded rows to plot; run the encoder evaluation first")
    missing = [c for c in ("encoded", "group") if c not in df.columns]
    if missing:
        raise DataError(f"encoder table lacks columns {missing}; it needs 'encoded' and 'group'")
    df = df.assign(group=df["group"].astype(str))
    present = set(df["group"])
    order = [g for g in order if g in present] if order else _group_order(list(df["group"]))
    palette = [f"C{i}" for i in range(10)]
    colors = {g: palette[i % 10] for i, g in enumerate(order)}
    splits = list(dict.fromkeys(df["split"].astype(str))) if "split" in df.columns else [None]
    fig = Figure(figsize=(max(6, 1.6 * len(order) * len(splits)), 5))
    axes = np.atleast_1d(fig.subplots(1, len(splits), sharey=True, squeeze=False)[0])
    for ax, split in zip(axes, splits):
        part = df if split is None else df[df["split"].astype(str) == split]
        _draw_groups(ax, part, order, colors)
        ax.set(title="all rows" if split is None else f"split: {split}", xlabel="group",
               ylabel="encoded value")
    handles = [Patch(color=colors[g], alpha=0.5, label=g) for g in order] + [
        Line2D([], [], color="black", lw=2, label="group mean"),
        Line2D([], [], color="tab:red", ls="--", label=f"class boundaries ±{BOUNDARY}"),
    ]
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_encoder_distributions(df: pd.DataFrame, path: str | Path, order: list[str] | None = None,
                               title: str = "Distribution of GRADIEND encoded values per group") -> Path:
    """Violins + points of encoded values per group (facets per split; `order`: the groups, left to
    right), boundaries ±0.5 -> PNG."""
    with _PLOT_LOCK:
        return save_figure(encoder_distributions_figure(df, order, title), path)


def target_words_figure(df: pd.DataFrame, title: str = "Encoded value per target word",
                        classes: list[str] | None = None) -> Figure:
    """Points + mean per (class, target word) of the encoded token, coloured by class, classes in the
    given order (else as they first appear); boundaries at +-0.5. df: encoded, source_class, source_word."""
    missing = [c for c in ("encoded", "source_class", "source_word") if c not in df.columns]
    if df is None or len(df) == 0 or missing:
        raise DataError(f"no rows with encoded, source_class and source_word to plot (missing {missing})")
    d = df.assign(word=df["source_word"].str.lower(), source_class=df["source_class"].astype(str))
    present = list(dict.fromkeys(d["source_class"]))
    classes = [c for c in classes if c in present] + [c for c in present if c not in classes] if classes else present
    keys = [(c, w) for c in classes for w in sorted(set(d.loc[d["source_class"] == c, "word"]))]
    fig = Figure(figsize=(max(6.0, 0.55 * len(keys) + 2), 4.8))
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only; fixed so the image is reproducible
    for i, (c, w) in enumerate(keys):
        vals = d.loc[(d["source_class"] == c) & (d["word"] == w), "encoded"].to_numpy(dtype=float)
        color = f"C{classes.index(c) % 10}"
        ax.scatter(i + rng.uniform(-0.15, 0.15, vals.size), vals, s=10, color=color, alpha=0.7)
        ax.plot([i - 0.3, i + 0.3], [vals.mean()] * 2, color="black", lw=2)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([f"{w}\n({c})" for c, w in keys], fontsize=8, rotation=45 if len(keys) > 12 else 0)
    for b in (-BOUNDARY, BOUNDARY):
        ax.axhline(b, color="tab:red", ls="--", lw=1)
    ax.axhline(0.0, color="grey", ls=":", lw=0.8)
    ax.set(title=title, xlabel="target word (class of the encoded token)", ylabel="encoded value")
    handles = [Patch(color=f"C{i % 10}", alpha=0.7, label=c) for i, c in enumerate(classes)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="class")
    fig.tight_layout()
    return fig


def plot_target_words(df: pd.DataFrame, path: str | Path, title: str = "Encoded value per target word",
                      classes: list[str] | None = None) -> Path:
    """Encoded values per (class, target word) -> PNG."""
    with _PLOT_LOCK:
        return save_figure(target_words_figure(df, title, classes), path)


# ----------------------------------------------------------------------------- probability shifts

def lr_tick_labels(lrs: np.ndarray, max_labels: int = 8) -> list[str]:
    """A label for every rate that is a power of ten (and 0), '' for the others; with fewer than two
    such rates, every k-th rate so that at most `max_labels` are labelled. The default 16 rates (100 ...
    0.001) get 100, 10, 1, 0.1, 0.01, 0.001: readable at any figure width."""
    lrs = np.asarray(lrs, dtype=float)
    exponent = np.log10(np.where(lrs != 0, np.abs(lrs), 1.0))
    decade = (lrs != 0) & np.isclose(exponent, np.round(exponent), rtol=0.0, atol=1e-9)
    show = decade | (lrs == 0)
    if int(decade.sum()) < 2:
        step = max(1, math.ceil(lrs.size / max_labels))
        show = np.arange(lrs.size) % step == 0
    return [f"{lr:g}" if keep else "" for lr, keep in zip(lrs, show)]


def _xscale(ax, lrs: np.ndarray) -> None:
    """Log (symlog with 0 or negatives) learning-rate axis with a tick at every rate of the grid and a
    label at a readable subset (`lr_tick_labels`); no minor ticks (the default log ticks, minor ticks and
    mathtext labels made up most of the plot's drawing time)."""
    if (lrs > 0).all():
        ax.set_xscale("log")
    else:
        nz = np.abs(lrs[lrs != 0])
        ax.set_xscale("symlog", linthresh=float(nz.min()) if nz.size else 1.0)
    from matplotlib.ticker import NullLocator

    ax.set_xticks(lrs, labels=lr_tick_labels(lrs))
    ax.xaxis.set_minor_locator(NullLocator())


def _band(ax, lrs, cells: pd.DataFrame, center: float, column: str, color: str, label: str | None) -> None:
    """The interval of `column` (a change vs the base model: its _lo/_hi columns) placed at the base
    model's value `center`, as a shaded band, clipped to [0, 1] where LMS and probabilities live (the
    interval of a difference at a cell that destroys the LMS is minus the base's own spread)."""
    lo, hi = f"{column}_lo", f"{column}_hi"
    if lo in cells and hi in cells:
        ax.fill_between(lrs, np.clip(center + cells[lo].to_numpy(dtype=float), 0.0, 1.0),
                        np.clip(center + cells[hi].to_numpy(dtype=float), 0.0, 1.0),
                        color=color, alpha=0.18, lw=0, label=label)


def _lms_panel(ax, grid, cells: pd.DataFrame, lrs, sel_lr, selected) -> None:
    cfg = grid.config or {}
    level = float(cfg.get("ci_level", 0.95))
    ax.plot(lrs, cells["lms"], marker="o", lw=2.5, color="tab:purple", label="LMS of rewritten model")
    _band(ax, lrs, cells, grid.base_lms, "lms_diff", "tab:purple", f"{level:.0%} CI (paired with base)")
    ax.axhline(grid.base_lms, color="tab:purple", ls=":", label=f"LMS of base model ({grid.base_lms:.3g})")
    ratio = cfg.get("lms_ratio")
    if cfg.get("policy") == "lms_threshold" and ratio:
        ax.axhline(ratio * grid.base_lms, color="grey", ls="-.", lw=1, label=f"LMS threshold ({ratio:g} × base)")
    if cfg.get("policy") == "lms_significance" and "lms_p" in cells:
        below = cells["lms_p"].to_numpy(dtype=float) < float(cfg.get("alpha", 0.05))
        if below.any():
            ax.plot(lrs[below], cells["lms"].to_numpy(dtype=float)[below], marker="x", ms=9, mew=2, ls="",
                    color="tab:red", label=f"significantly below base (p < {cfg.get('alpha', 0.05):g})")
    if sel_lr is not None:
        ax.plot([sel_lr], [float(selected["lms"])], marker="*", ms=16, color="gold", mec="black", ls="",
                label=f"selected lr = {sel_lr:g}")
    ax.set(title=f"Language modelling score (neutral text, {cfg.get('lms', 'accuracy')})",
           xlabel="learning rate", ylabel="LMS")


def _class_panel(ax, grid, cells: pd.DataFrame, lrs, d: str, target_class: str, sel_lr) -> None:
    from gradiend_core.decoder_eval import prob_column
    from gradiend_core.grid_stats import change_column

    base = grid.base_row()
    for i, c in enumerate(grid.classes):
        col, thick = prob_column(c, d), c == target_class
        ax.plot(lrs, cells[col], marker="o", lw=2.5 if thick else 1.2, color=f"C{i}", label=f"P({c}) after rewrite")
        _band(ax, lrs, cells, float(base[col]), change_column(c, d), f"C{i}", None)
        ax.axhline(float(base[col]), color=f"C{i}", ls=":", lw=1, label=f"P({c}) base model")
        if thick and sel_lr is not None:
            y = float(cells.loc[cells["learning_rate"] == sel_lr, col].iloc[0])
            ax.plot([sel_lr], [y], marker="*", ms=16, color="gold", mec="black", ls="")
    ax.set(title=f"Class probabilities on {d} sentences (n={grid.rows_per_class.get(d, 0)})",
           xlabel="learning rate", ylabel="mean probability at the mask")


def probability_shifts_figure(grid, target_class: str, selected: dict | None = None) -> Figure:
    if grid.table is None or len(grid.table) == 0:
        raise DataError("the decoder grid is empty; run the decoder evaluation first")
    if target_class not in grid.feature_factors:
        raise DataError(f"class {target_class!r} has no strengthening feature factor in this grid; "
                        f"use one of {sorted(grid.feature_factors)}")
    ff = float(grid.feature_factors[target_class])
    selected = grid.summary.get(target_class) if selected is None else selected
    cells = grid.table[(~grid.table["is_base"]) & (grid.table["feature_factor"] == ff)].sort_values("learning_rate")
    if cells.empty:
        raise DataError(f"the grid has no cell with feature factor {ff:+g}; include it in decoder feature_factors")
    lrs = cells["learning_rate"].to_numpy(dtype=float)
    sel_lr = None
    if selected and selected.get("id") != "base" and float(selected.get("feature_factor", np.nan)) == ff:
        sel_lr = float(selected["learning_rate"])

    panels = 1 + len(grid.dataset_classes)
    fig = Figure(figsize=(5.5 * panels, 4.5))
    axes = np.atleast_1d(fig.subplots(1, panels, squeeze=False)[0])
    level = float((grid.config or {}).get("ci_level", 0.95))
    fig.suptitle(f"Rewriting with feature factor {ff:+g} (strengthens {target_class}): "
                 "language modelling and class probabilities vs. learning rate\n"
                 f"(selection metric: P({target_class}) on sentences of the other class; dotted = base model; "
                 f"bands = {level:.0%} paired bootstrap CI)")
    _lms_panel(axes[0], grid, cells, lrs, sel_lr, selected)
    for ax, d in zip(axes[1:], grid.dataset_classes):
        _class_panel(ax, grid, cells, lrs, d, target_class, sel_lr)
    for ax in axes:
        _xscale(ax, lrs)
        if sel_lr is not None:
            ax.axvline(sel_lr, color="black", ls="--", lw=1, label="selected cell" if ax is axes[0] else None)
        ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def plot_probability_shifts(grid, path: str | Path, target_class: str, selected: dict | None = None) -> Path:
    """LMS and P(class) vs learning rate for the ff strengthening `target_class`, selected cell starred -> PNG."""
    with _PLOT_LOCK:
        return save_figure(probability_shifts_figure(grid, target_class, selected), path)
