"""Paired bootstrap intervals of the decoder grid: known answers, determinism, and the selection they feed
(the significance policy against the reference's threshold on a hand-made grid with known noise)."""
import numpy as np
import pytest

from gradiend_core.decoder_eval import DecoderGridConfig, grid_result
from gradiend_core.grid_stats import Bootstrap, GridScores, resample_counts

ACC = lambda m: m  # noqa: E731  accuracy: the LMS is the mean position score


def scores(lms: list, probs=None, row_dataset=(0,)) -> GridScores:
    lms = np.asarray(lms, dtype=float)
    probs = np.zeros((len(lms), len(row_dataset), 1)) if probs is None else np.asarray(probs, dtype=float)
    return GridScores(lms, probs, np.asarray(row_dataset))


def test_resample_counts_are_seeded_draws_of_n():
    a = resample_counts(50, 200, seed=42, stream=0)
    assert a.shape == (200, 50) and (a.sum(1) == 50).all()
    assert np.array_equal(a, resample_counts(50, 200, seed=42, stream=0))
    assert not np.array_equal(a, resample_counts(50, 200, seed=42, stream=1))
    assert not np.array_equal(a, resample_counts(50, 200, seed=7, stream=0))


def test_identical_and_shifted_cells_have_exact_intervals():
    base = np.random.default_rng(0).normal(-3.0, 1.0, 80)  # log-probabilities of 80 positions
    s = scores([base, base, base - 0.25])
    d = Bootstrap(s, 500, 42, 0.95).lms_diff(ACC)
    assert (d["diff"][1], d["lo"][1], d["hi"][1], d["p"][1]) == (0.0, 0.0, 0.0, 1.0)  # same scores: no change
    assert d["diff"][2] == pytest.approx(-0.25) and d["lo"][2] == pytest.approx(-0.25) == d["hi"][2]
    assert d["p"][2] == pytest.approx(1 / 501)  # below the base in every resample: the smallest p


def test_accuracy_difference_interval_matches_the_binomial_answer():
    """10 of 100 masked positions turn wrong, nothing else changes: the resampled difference is
    -Binomial(100, 0.1) / 100, whose central 95% is [-0.16, -0.05] (quantiles 5 and 16 of the binomial)."""
    base = np.zeros(100)
    base[:40] = 1.0
    cell = base.copy()
    cell[:10] = 0.0
    d = Bootstrap(scores([base, cell]), 4000, 42, 0.95).lms_diff(ACC)
    assert d["diff"][1] == pytest.approx(-0.10)
    assert d["lo"][1] == pytest.approx(-0.16, abs=0.011) and d["hi"][1] == pytest.approx(-0.05, abs=0.011)
    assert d["p"][1] < 0.001


def test_probability_change_interval_matches_the_normal_answer():
    """400 rows whose P(C) rises by N(0.05, 0.1): the interval is 0.05 +- 1.96 x 0.1 / 20 (within 15%)."""
    rng = np.random.default_rng(1)
    base = rng.uniform(0.1, 0.5, 400)
    cell = base + rng.normal(0.05, 0.1, 400)
    probs = np.stack([base, cell])[:, :, None]                     # (R=2, N=400, C=1)
    ch = Bootstrap(scores(np.zeros((2, 5)), probs, np.zeros(400, dtype=int)), 4000, 42, 0.95).change(0, [0])
    diff = cell - base
    half = 1.96 * diff.std(ddof=1) / np.sqrt(400)
    assert ch["diff"][1] == pytest.approx(diff.mean())
    assert (ch["hi"][1] - ch["lo"][1]) / 2 == pytest.approx(half, rel=0.15)
    assert ch["lo"][1] < diff.mean() < ch["hi"][1]


def test_pooled_change_is_stratified_by_dataset_class():
    """Two dataset classes of 3 and 1 rows pooled: the point is the row-weighted mean; a class whose rows all
    change by the same amount adds no width (each class keeps its row count in every resample)."""
    probs = np.zeros((2, 4, 1))
    probs[1, :3, 0] = 0.2   # class 0: +0.2 on each of its 3 rows
    probs[1, 3, 0] = 0.6    # class 1: +0.6 on its 1 row
    ch = Bootstrap(scores(np.zeros((2, 3)), probs, [0, 0, 0, 1]), 300, 3, 0.9).change(0, [0, 1])
    assert ch["diff"][1] == pytest.approx(0.3) and ch["lo"][1] == pytest.approx(0.3) == ch["hi"][1]


# --------------------------------------------------------------------------- selection on a known grid

LRS = [0.001, 0.01, 1.0]


def _record(lms_values, p_3sg_on_3pl, ff=0.0, lr=0.0, base=False):
    """A grid record with 2 classes and 2 rows (one per dataset class); P(3SG) on the 3PL row is the metric."""
    rows = [[0.5, 0.5], [p_3sg_on_3pl, 1 - p_3sg_on_3pl]]   # row 0: a 3SG row, row 1: a 3PL row
    return {"is_base": base, "feature_factor": ff, "learning_rate": lr, "lms": float(np.mean(lms_values)),
            "prob_3SG_on_3SG": 0.5, "prob_3PL_on_3SG": 0.5, "prob_3SG_on_3PL": p_3sg_on_3pl,
            "prob_3PL_on_3PL": 1 - p_3sg_on_3pl, "lms_values": list(map(float, lms_values)), "row_probs": rows}


def known_noise_grid(policy: str):
    """Base: 40 of 100 masked tokens right (LMS 0.40; the 0.99 threshold is 0.396, i.e. 40 tokens).
    lr 0.001: nothing changes, effect +0.001.
    lr 0.01: the strong, harmless rewrite: +0.05, and noise flips three positions (two right -> wrong, one
      wrong -> right): LMS 0.39, one token below the threshold, but no systematic damage.
    lr 1: the damaging rewrite: +0.30, and 12 right positions turn wrong (LMS 0.28)."""
    base = np.zeros(100)
    base[:40] = 1.0
    noisy = base.copy()
    noisy[[3, 17]] = 0.0
    noisy[77] = 1.0
    damaged = base.copy()
    damaged[:12] = 0.0
    records = [_record(base, 0.10, base=True), _record(base, 0.101, 1.0, 0.001), _record(noisy, 0.15, 1.0, 0.01),
               _record(damaged, 0.40, 1.0, 1.0)]
    layout = {"classes": ["3SG", "3PL"], "dataset_classes": ["3SG", "3PL"], "rows_per_class": {"3SG": 1, "3PL": 1},
              "feature_factors": {"3SG": 1.0}, "row_dataset": [0, 1], "objective": "mlm"}
    return grid_result(records, layout, DecoderGridConfig(learning_rates=LRS, policy=policy, lms="accuracy"))


def test_significance_keeps_the_noisy_strong_cell_the_threshold_drops():
    sig = known_noise_grid("lms_significance")
    thr = known_noise_grid("lms_threshold")
    p = dict(zip(sig.table["learning_rate"], sig.table["lms_p"]))
    assert p[0.01] > 0.2 and p[1.0] < 0.01  # noise is not significant; the damage is
    assert sig.summary["3SG"]["learning_rate"] == 0.01 and sig.summary["3SG"]["policy"] == "lms_significance"
    assert thr.summary["3SG"]["learning_rate"] == 0.001  # the threshold fell for one masked token of noise
    assert sig.summary["3SG"]["lms_diff"] == pytest.approx(-0.01)
    assert sig.summary["3SG"]["change"] == pytest.approx(0.05)
