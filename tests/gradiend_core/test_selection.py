import math
import random

import pytest

from gradiend_core.errors import ConfigError
from gradiend_core.selection import LMSSignificancePolicy, LMSThresholdPolicy, LMSTimesMetricPolicy, get_policy


def cand(ff, lr, lms, metric):
    return {"feature_factor": ff, "learning_rate": lr, "lms": lms, "metric": metric}


# A hand-made grid, base LMS 0.50 -> threshold 0.495 at ratio 0.99.
GRID = [
    cand(1.0, 0.001, 0.500, 0.10),
    cand(1.0, 0.01, 0.499, 0.20),
    cand(1.0, 0.1, 0.496, 0.35),   # best passing cell
    cand(1.0, 1.0, 0.480, 0.60),   # higher metric, LMS too low
    cand(1.0, 10.0, 0.300, 0.99),  # highest metric * lms = 0.297 (lr=1: 0.288)
]


def shuffled(cands, seed=0):
    out = list(cands)
    random.Random(seed).shuffle(out)
    return out


def test_threshold_picks_best_metric_among_cells_keeping_lms():
    pick = LMSThresholdPolicy(0.99).select(shuffled(GRID), base_lms=0.5)
    assert (pick["feature_factor"], pick["learning_rate"]) == (1.0, 0.1)
    # A looser threshold admits the lr=1 cell (0.48 >= 0.95 * 0.5).
    pick = LMSThresholdPolicy(0.95).select(GRID, base_lms=0.5)
    assert pick["learning_rate"] == 1.0


def test_threshold_tie_goes_to_first_in_sorted_ff_lr_order():
    tied = [cand(1.0, 0.5, 0.5, 0.3), cand(-1.0, 2.0, 0.5, 0.3), cand(-1.0, 0.2, 0.5, 0.3), cand(1.0, 0.1, 0.5, 0.1)]
    for seed in range(5):
        pick = LMSThresholdPolicy().select(shuffled(tied, seed), base_lms=0.5)
        assert (pick["feature_factor"], pick["learning_rate"]) == (-1.0, 0.2)


def test_threshold_falls_back_to_smallest_nonzero_lr_when_nothing_keeps_lms():
    cands = [cand(1.0, 0.0, 0.1, 0.9), cand(1.0, -0.05, 0.1, 0.2), cand(1.0, 0.02, 0.1, 0.1), cand(1.0, 5.0, 0.1, 0.8)]
    pick = LMSThresholdPolicy(0.99).select(shuffled(cands), base_lms=0.5)
    assert pick["learning_rate"] == 0.02  # |0.02| is the smallest non-zero |lr|; lr 0 is skipped
    assert LMSThresholdPolicy().select([cand(1.0, 0.0, 0.1, 0.9)], base_lms=0.5) is None


def test_times_metric_maximises_product():
    pick = LMSTimesMetricPolicy().select(shuffled(GRID), base_lms=0.5)
    products = {c["learning_rate"]: c["metric"] * c["lms"] for c in GRID}
    assert pick["learning_rate"] == max(products, key=products.get) == 10.0


def test_nan_metrics_are_never_selected_and_empty_gives_none():
    cands = [cand(1.0, 0.1, 0.5, math.nan), cand(1.0, 0.2, 0.5, 0.05)]
    assert LMSThresholdPolicy().select(cands, 0.5)["learning_rate"] == 0.2
    assert LMSTimesMetricPolicy().select(cands, 0.5)["learning_rate"] == 0.2
    assert LMSThresholdPolicy().select([], 0.5) is None
    assert LMSTimesMetricPolicy().select([], 0.5) is None


def test_get_policy_by_name_and_errors():
    p = get_policy("lms_threshold", ratio=0.9)
    assert isinstance(p, LMSThresholdPolicy) and p.ratio == 0.9 and p.name == "lms_threshold"
    assert isinstance(get_policy("lms_times_metric"), LMSTimesMetricPolicy)
    with pytest.raises(ConfigError, match="unknown selection policy"):
        get_policy("best_lms")
    with pytest.raises(ConfigError, match="does not take"):
        get_policy("lms_times_metric", ratio=0.9)
    with pytest.raises(ConfigError, match="lms_ratio"):
        get_policy("lms_threshold", ratio=-1)


def test_significance_drops_only_cells_significantly_below_the_base():
    cands = [dict(cand(1.0, 0.01, 0.49, 0.20), lms_p=0.40),   # one token lower: noise, kept
             dict(cand(1.0, 0.1, 0.47, 0.35), lms_p=0.06),    # lower, but not significantly at 0.05
             dict(cand(1.0, 1.0, 0.45, 0.60), lms_p=0.01)]    # significantly below: dropped
    pick = LMSSignificancePolicy(0.05).select(shuffled(cands), base_lms=0.5)
    assert pick["learning_rate"] == 0.1
    assert LMSSignificancePolicy(0.1).select(cands, base_lms=0.5)["learning_rate"] == 0.01
    assert LMSThresholdPolicy(0.99).select(cands, base_lms=0.5)["learning_rate"] == 0.01  # fallback: gentlest
    none_pass = [dict(c, lms_p=0.001) for c in cands]
    assert LMSSignificancePolicy().select(none_pass, 0.5)["learning_rate"] == 0.01  # fallback: gentlest


def test_significance_needs_p_values_and_a_valid_alpha():
    with pytest.raises(ConfigError, match="lms_p"):
        LMSSignificancePolicy().select([cand(1.0, 0.1, 0.5, 0.2)], 0.5)
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="alpha"):
            get_policy("lms_significance", alpha=bad)
    assert get_policy("lms_significance", alpha=0.1).alpha == 0.1
    with pytest.raises(ConfigError, match="does not take"):
        get_policy("lms_significance", ratio=0.9)
