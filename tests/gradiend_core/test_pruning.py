"""The pre-pruning algorithm's pieces (gradiend_core.pruning); the stage tests run it on a tiny model."""
import pandas as pd
import pytest
import torch

from gradiend_core.pruning import PrePruneConfig, resolve_k, stratified_rows


def test_resolve_k_reads_floats_as_fractions_and_ints_as_counts():
    assert resolve_k(0.1, 95) == 10 and resolve_k(1.0, 95) == 95 and resolve_k(7, 95) == 7
    assert resolve_k(500, 95) == 95 and resolve_k(1e-9, 95) == 1


def test_stratified_rows_split_evenly_over_the_pair_and_skip_other_transitions():
    n = 30  # A->B, B->A and (not the pair's) A->C rows
    rows = pd.DataFrame({"store_row": range(n), "kind": "training", "split": ["train"] * 27 + ["test"] * 3,
                         "factual_class": ["A", "B", "A"] * 10, "alternative_class": ["B", "A", "C"] * 10})
    picked = stratified_rows(rows, 7, seed=3, pair=("A", "B"))
    assert len(picked) == 7 and len(set(picked)) == 7
    by = rows.set_index("store_row").loc[picked]
    assert (by["factual_class"] == "A").sum() == 4 and (by["split"] == "train").all()
    assert set(zip(by["factual_class"], by["alternative_class"])) <= {("A", "B"), ("B", "A")}
    assert picked == stratified_rows(rows, 7, seed=3, pair=("A", "B")) != stratified_rows(rows, 7, 4, ("A", "B"))


def test_config_rejects_an_empty_selection():
    from gradiend_core.errors import ConfigError

    with pytest.raises(ConfigError, match="pre_prune.topk"):
        PrePruneConfig(topk=0.0).validate()
    with pytest.raises(ConfigError, match="pre_prune.n_samples"):
        PrePruneConfig(n_samples=0).validate()


def test_kept_per_param_counts_each_tensors_kept_dims():
    from gradiend_core.param_map import ParamMap, ParamSpec
    from gradiend_core.pruning import kept_per_param

    pmap = ParamMap([ParamSpec("a", (3, 4)), ParamSpec("b", (5,)), ParamSpec("c", (2, 2)), ParamSpec("d", (7,))])
    g = torch.Generator().manual_seed(0)
    keep = torch.nonzero(torch.rand(pmap.input_dim, generator=g) < 0.4).reshape(-1)
    bounds = [0, 12, 17, 21, 28]
    want = {n: int(((keep >= lo) & (keep < hi)).sum()) for n, lo, hi in zip("abcd", bounds, bounds[1:])}
    assert kept_per_param(pmap, keep) == want and sum(want.values()) == keep.numel()
    assert kept_per_param(pmap, keep[torch.randperm(keep.numel(), generator=g)]) == want  # order does not matter
    assert kept_per_param(pmap, torch.tensor([], dtype=torch.long)) == dict.fromkeys("abcd", 0)
