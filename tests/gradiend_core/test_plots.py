import numpy as np
import pandas as pd
import pytest

from gradiend_core.decoder_eval import GridResult, prob_column
from gradiend_core.errors import DataError
from gradiend_core.plots import (encoder_distributions_figure, plot_encoder_distributions,
                                 plot_probability_shifts, plot_training_convergence,
                                 probability_shifts_figure, training_convergence_figure)

PNG = b"\x89PNG\r\n\x1a\n"

STATS = {
    "eval_steps": [0, 5, 10, 15],
    "correlation": [0.05, 0.4, 0.92, 0.85],
    "mean_by_class": {"1": [0.0, 0.3, 0.7, 0.6], "-1": [0.0, -0.2, -0.8, -0.7]},
    "loss": [1.0 / (i + 1) for i in range(15)],
    "best": {"step": 10, "correlation": 0.92},
}


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000


def _legend_texts(ax):
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg else []


def _all_axes(fig):
    return [ax for ax in fig.axes if ax.get_title()]


def test_training_convergence(tmp_path):
    fig = training_convergence_figure(STATS)
    assert fig.get_suptitle()
    ax_c, ax_m, ax_l = fig.axes
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() == "training step" and ax.get_ylabel()
    # Best step: a dashed vertical line at x=10 and a star at (10, 0.92).
    assert any(list(line.get_xdata()) == [10, 10] for line in ax_c.lines)
    assert any(line.get_marker() == "*" and list(line.get_ydata()) == [0.92] for line in ax_c.lines)
    assert any("best checkpoint (step 10" in t for t in _legend_texts(ax_c))
    assert _legend_texts(ax_m) == ["3SG (label 1)", "3PL (label -1)"]
    assert ax_l.get_yscale() == "log"
    np.testing.assert_allclose(ax_l.lines[0].get_ydata(), STATS["loss"])
    out = plot_training_convergence(STATS, tmp_path / "sub" / "conv.png", class_names={"1": "A", "-1": "B"})
    _assert_png(out)
    # Non-positive loss stays on a linear axis.
    assert training_convergence_figure({**STATS, "loss": [0.0, -1.0]}).axes[2].get_yscale() == "linear"


def test_training_convergence_rejects_empty_or_ragged_stats(tmp_path):
    with pytest.raises(DataError):
        plot_training_convergence({"eval_steps": []}, tmp_path / "x.png")
    with pytest.raises(DataError, match="one value per evaluation"):
        training_convergence_figure({**STATS, "correlation": [0.1]})
    assert not (tmp_path / "x.png").exists()


def _encoder_df(with_split=True):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "encoded": np.r_[rng.normal(0.7, 0.1, 12), rng.normal(-0.7, 0.1, 12), rng.normal(0, 0.2, 6), [0.1]],
        "group": ["3SG"] * 12 + ["3PL"] * 12 + ["neutral (dataset)"] * 6 + ["neutral (training masked)"],
    })
    if with_split:
        df["split"] = ["train", "test"] * 15 + ["test"]
    return df


def test_encoder_distributions(tmp_path):
    fig = encoder_distributions_figure(_encoder_df())
    axes = _all_axes(fig)
    assert [ax.get_title() for ax in axes] == ["split: train", "split: test"]
    for ax in axes:
        assert ax.get_ylabel() == "encoded value" and ax.get_xlabel() == "group"
        ys = {line.get_ydata()[0] for line in ax.lines if len(set(line.get_ydata())) == 1}
        assert {0.5, -0.5} <= ys  # boundaries drawn
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks[0].startswith("3SG") and ticks[-1].startswith("neutral")  # neutral groups last
    legend = _legend_texts(axes[-1])
    assert "class boundaries ±0.5" in legend and "3PL" in legend and "group mean" in legend
    _assert_png(plot_encoder_distributions(_encoder_df(with_split=False), tmp_path / "enc.png"))
    with pytest.raises(DataError):
        plot_encoder_distributions(pd.DataFrame(columns=["encoded", "group"]), tmp_path / "e.png")
    with pytest.raises(DataError, match="group"):
        encoder_distributions_figure(pd.DataFrame({"encoded": [0.1]}))


def _grid(lrs=(0.01, 0.1, 1.0)):
    classes = ["3SG", "3PL"]
    recs = [{"is_base": True, "feature_factor": 0.0, "learning_rate": 0.0, "lms": 0.5,
             prob_column("3SG", "3SG"): 0.4, prob_column("3PL", "3SG"): 0.1,
             prob_column("3SG", "3PL"): 0.05, prob_column("3PL", "3PL"): 0.6}]
    for ff in (-1.0, 1.0):
        for i, lr in enumerate(lrs):
            up = (i + 1) * 0.1 * ff
            recs.append({"is_base": False, "feature_factor": ff, "learning_rate": lr, "lms": 0.5 - 0.05 * i,
                         prob_column("3SG", "3SG"): 0.4 + up, prob_column("3PL", "3SG"): 0.1,
                         prob_column("3SG", "3PL"): 0.05 + up / 2, prob_column("3PL", "3PL"): 0.6 - up})
    summary = {"3SG": {"value": 0.1, "feature_factor": 1.0, "learning_rate": lrs[1], "lms": 0.45,
                       "id": {"feature_factor": 1.0, "learning_rate": lrs[1]}, "base_lms": 0.5}}
    return GridResult(pd.DataFrame(recs), 0.5, summary, classes, classes, {"3SG": 3, "3PL": 4},
                      {"3SG": 1.0, "3PL": -1.0}, {"policy": "lms_threshold", "lms_ratio": 0.99})


def test_probability_shifts(tmp_path):
    grid = _grid()
    fig = probability_shifts_figure(grid, "3SG")
    axes = _all_axes(fig)
    assert len(axes) == 3 and "strengthens 3SG" in fig.get_suptitle()
    assert axes[0].get_ylabel() == "LMS" and "3SG sentences" in axes[1].get_title()
    for ax in axes:
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
        assert any(list(line.get_xdata()) == [0.1, 0.1] and line.get_linestyle() == "--" for line in ax.lines)
        # ticked at the grid's own rates, plain labels, no minor ticks
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.1", "1"]
        assert list(ax.get_xticks()) == [0.01, 0.1, 1.0] and len(ax.get_xticks(minor=True)) == 0
    lms_line = axes[0].lines[0]
    np.testing.assert_allclose(lms_line.get_xdata(), [0.01, 0.1, 1.0])
    np.testing.assert_allclose(lms_line.get_ydata(), [0.5, 0.45, 0.4])  # the ff=+1 cells only
    legend = _legend_texts(axes[0])
    assert "LMS of base model (0.5)" in legend and "selected lr = 0.1" in legend
    # The target-class curve on the 3PL panel is thick and starred at the selected lr.
    thick = [line for line in axes[2].lines if line.get_linewidth() > 2]
    assert len(thick) == 1 and thick[0].get_label() == "P(3SG) after rewrite"
    stars = [line for line in axes[2].lines if line.get_marker() == "*"]
    assert stars and stars[0].get_xdata()[0] == 0.1 and stars[0].get_ydata()[0] == pytest.approx(0.15)
    _assert_png(plot_probability_shifts(grid, tmp_path / "p.png", "3PL", selected={}))


def test_probability_shifts_symlog_and_errors(tmp_path):
    fig = probability_shifts_figure(_grid(lrs=(-0.1, 0.1, 1.0)), "3SG")
    assert all(ax.get_xscale() == "symlog" for ax in _all_axes(fig))
    with pytest.raises(DataError, match="no strengthening"):
        plot_probability_shifts(_grid(), tmp_path / "p.png", "neutral")
    empty = _grid()
    empty.table = empty.table.iloc[0:0]
    with pytest.raises(DataError, match="empty"):
        plot_probability_shifts(empty, tmp_path / "p.png", "3SG")


def _with_intervals(grid, lo=-0.02, hi=0.01):
    t = grid.table.copy()
    t["lms_diff"] = t["lms"] - grid.base_lms
    t["lms_diff_lo"], t["lms_diff_hi"] = t["lms_diff"] + lo, t["lms_diff"] + hi
    t["lms_p"] = [1.0] + [0.5, 0.5, 0.001] * 2
    for c in grid.classes:
        for d in grid.dataset_classes:
            name, col = f"change_{c}_on_{d}", prob_column(c, d)
            t[name] = t[col] - t.loc[0, col]
            t[f"{name}_lo"], t[f"{name}_hi"] = t[name] + lo, t[name] + hi
    grid.table = t
    return grid


def test_probability_shifts_default_rates_are_all_ticked_and_decades_labelled():
    from gradiend_core.decoder_eval import DEFAULT_LEARNING_RATES

    lrs = sorted(DEFAULT_LEARNING_RATES)
    fig = probability_shifts_figure(_grid(lrs=tuple(lrs)), "3SG")
    for ax in _all_axes(fig):
        assert list(ax.get_xticks()) == lrs  # every rate keeps its tick
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert [x for x in labels if x] == ["0.001", "0.01", "0.1", "1", "10", "100"]


def test_tick_labels_without_decades_label_every_kth_rate():
    from gradiend_core.plots import lr_tick_labels

    labels = lr_tick_labels(np.array([0.3, 0.5, 0.7, 2, 3, 5, 7, 20, 30, 50, 70, 200]), max_labels=6)
    assert labels == ["0.3", "", "0.7", "", "3", "", "7", "", "30", "", "70", ""]
    assert lr_tick_labels(np.array([-1.0, 0.0, 0.1, 1.0])) == ["-1", "0", "0.1", "1"]


def test_probability_shifts_draws_the_interval_bands_and_significant_drops():
    grid = _with_intervals(_grid())
    grid.config = {"policy": "lms_significance", "alpha": 0.05, "ci_level": 0.9}
    fig = probability_shifts_figure(grid, "3SG")
    axes = _all_axes(fig)
    band = axes[0].collections[0]  # the LMS band: base LMS + the paired difference's interval
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(0.5 - 0.1 - 0.02) and ys.max() == pytest.approx(0.5 + 0.01)
    assert "90% CI (paired with base)" in _legend_texts(axes[0]) and "bands = 90%" in fig.get_suptitle()
    assert all(len(ax.collections) == 2 for ax in axes[1:])  # one band per class curve
    crosses = [line for line in axes[0].lines if line.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [1.0]  # p = 0.001 < alpha at lr 1
