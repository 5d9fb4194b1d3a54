"""Multi-seed selection on hand-made run lists (and one real training run)."""
import json

import pytest
import torch

from gradiend_core.errors import ConfigError, DataError
from gradiend_core.seeds import (
    STRATEGY_CONVERGENT,
    STRATEGY_FALLBACK,
    SeedSelectionConfig,
    enough_convergent,
    is_convergent,
    select_seed,
    seeds_for,
)
from gradiend_core.training import EvalSet, TrainConfig, train_gradiend


def run(seed, corr, m_pos=0.8, m_neg=-0.8, step=100, converged=True, eval_corr=None, improved=True):
    stats = {"best": {"step": step, "correlation": corr, "mean_by_class": {"1": m_pos, "-1": m_neg}},
             "converged": converged, "convergence": {"improved_over_step0": improved}}
    r = {"seed": seed, "stats": stats}
    if eval_corr is not None:
        r["eval_correlation"] = eval_corr
    return r


CFG = SeedSelectionConfig()


def test_converged_run_beats_higher_non_converged_run():
    runs = [run(0, 0.95, m_pos=0.3, converged=False), run(1, 0.7)]
    rep = select_seed(runs, CFG)
    assert rep["best_seed"] == 1 and rep["strategy"] == STRATEGY_CONVERGENT
    assert rep["convergent_seeds"] == [1] and rep["convergent_count"] == 1
    assert [r["converged"] for r in rep["runs"]] == [False, True]


def test_eval_correlation_is_the_selection_score_among_convergent():
    runs = [run(0, 0.9, eval_corr=0.6), run(1, 0.7, eval_corr=0.8), run(2, 0.99, m_neg=0.4)]
    rep = select_seed(runs, CFG)
    assert rep["best_seed"] == 1 and rep["best_selection_score"] == 0.8
    assert [r["selection_score"] for r in rep["runs"]] == [0.6, 0.8, 0.99]


def test_fallback_when_none_converged_takes_highest_correlation():
    runs = [run(3, 0.3, converged=False), run(4, 0.45, converged=False), run(5, 0.2, converged=False)]
    rep = select_seed(runs, CFG)
    assert rep["best_seed"] == 4 and rep["strategy"] == STRATEGY_FALLBACK
    assert rep["convergent_count"] == 0 and rep["convergent_seeds"] == []
    assert rep["enough_convergent"] is False


def test_ties_go_to_the_lowest_seed():
    assert select_seed([run(7, 0.8), run(2, 0.8), run(5, 0.8)], CFG)["best_seed"] == 2
    rep = select_seed([run(9, 0.4, converged=False), run(8, 0.4, converged=False)], CFG)
    assert rep["best_seed"] == 8
    assert [r["seed"] for r in rep["runs"]] == [8, 9]


def test_multi_seed_convergence_uses_signed_correlation():
    neg = run(0, -0.7, m_pos=-0.8, m_neg=0.8)  # single-run check (|corr|) said converged
    assert not is_convergent(neg["stats"], CFG)
    assert is_convergent(run(0, 0.7)["stats"], CFG)
    rep = select_seed([neg, run(1, 0.55)], CFG)
    assert rep["best_seed"] == 1 and rep["convergent_seeds"] == [1]


@pytest.mark.parametrize("bad", [
    dict(step=0),  # best at step 0
    dict(improved=False),  # never beat the step-0 score
    dict(converged=None),  # never evaluated
    dict(m_pos=0.3),  # a class mean below the mean threshold
    dict(m_pos=0.8, m_neg=0.8),  # same sign
    dict(corr=0.49),
])
def test_each_convergence_criterion(bad):
    kw = dict(seed=0, corr=0.9)
    kw.update(bad)
    assert not is_convergent(run(**kw)["stats"], CFG)


def test_thresholds_come_from_the_selection_config():
    r = run(0, 0.55, m_pos=0.45, m_neg=-0.6)
    assert not is_convergent(r["stats"], CFG)
    loose = SeedSelectionConfig(threshold=0.5, mean_threshold=0.4)
    assert is_convergent(r["stats"], loose)
    rep = select_seed([r], SeedSelectionConfig(threshold=0.6, mean_threshold=0.4, min_convergent_seeds=2))
    assert rep["threshold"] == 0.6 and rep["mean_threshold"] == 0.4 and rep["min_convergent_seeds"] == 2
    assert rep["strategy"] == STRATEGY_FALLBACK


def test_unevaluated_runs_rank_last_in_fallback():
    no_eval = {"seed": 0, "stats": {"best": {"step": 5, "correlation": None, "mean_by_class": {"1": None, "-1": None}},
                                    "converged": None}}
    rep = select_seed([no_eval, run(1, 0.1, converged=False)], CFG)
    assert rep["best_seed"] == 1
    assert select_seed([no_eval], CFG)["best_seed"] == 0


def test_enough_convergent_and_report_is_json():
    runs = [run(0, 0.9), run(1, 0.2, converged=False)]
    assert enough_convergent(runs, CFG)
    assert not enough_convergent(runs, SeedSelectionConfig(min_convergent_seeds=2))
    rep = select_seed(runs, CFG)
    assert json.loads(json.dumps(rep)) == rep
    assert set(rep["runs"][0]) >= {"seed", "converged", "best_step", "best_correlation", "mean_by_class",
                                   "selection_score"}


def test_seeds_for_and_validation():
    assert seeds_for(0, 3) == [0, 1, 2]
    assert seeds_for(41, 2) == [41, 42]
    with pytest.raises(ConfigError):
        seeds_for(0, 0)
    with pytest.raises(ConfigError):
        select_seed([run(0, 0.9)], SeedSelectionConfig(min_convergent_seeds=0))
    with pytest.raises(ConfigError):
        SeedSelectionConfig(threshold=2.0).validate()
    with pytest.raises(DataError, match="no seed runs"):
        select_seed([], CFG)
    with pytest.raises(DataError, match="duplicate"):
        select_seed([run(1, 0.9), run(1, 0.8)], CFG)
    with pytest.raises(DataError, match="'seed' and 'stats'"):
        select_seed([{"seed": 1}], CFG)


def test_real_training_stats_feed_selection():
    P = 32
    g = torch.Generator().manual_seed(0)
    lab = torch.where(torch.arange(80) % 2 == 0, 1.0, -1.0)
    u = torch.zeros(P)
    u[:6] = 1.0
    src = lab[:, None] * u + torch.randn(80, P, generator=g)
    rows = [(src[i:i + 1], src[i:i + 1]) for i in range(60)]
    ev = EvalSet(src[60:], lab[60:])
    cfg = TrainConfig(learning_rate=1e-2, num_epochs=1, eval_steps=20)
    runs = [{"seed": s, "stats": train_gradiend(rows, ev, P, cfg, seed=s, log=lambda m: None).stats}
            for s in seeds_for(0, 2)]
    rep = select_seed(runs, CFG)
    pool = [r for r in runs if is_convergent(r["stats"], CFG)] or runs
    best = max(pool, key=lambda r: (r["stats"]["best"]["correlation"], -r["seed"]))
    assert rep["best_seed"] == best["seed"]
    assert rep["strategy"] == (STRATEGY_CONVERGENT if rep["convergent_count"] else STRATEGY_FALLBACK)
    for r, summary in zip(runs, rep["runs"]):
        assert summary["best_correlation"] == r["stats"]["best"]["correlation"]
        assert summary["converged"] == is_convergent(r["stats"], CFG)
