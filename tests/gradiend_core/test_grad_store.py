"""The Zarr gradient store: exact round trips, bf16 bits, streaming importance, compaction."""
import numpy as np
import pytest
import torch

from gradiend_core.grad_store import (GradientStore, assemble, compact, create_store, from_storage,
                                      mean_abs_importance, to_storage, topk_indices)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_storage_round_trip(dtype):
    x = torch.randn(3, 50) * 1e-3
    back = from_storage(to_storage(x, dtype), dtype)
    ref = x.to({"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]).float()
    assert torch.equal(back, ref)


def _store(tmp_path, n=10, dim=300, dtype="float32"):
    g = torch.Generator().manual_seed(0)
    f, a = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    z = create_store(tmp_path / "gradients.zarr", n, dim, dtype, chunk_rows=4)
    for r0 in range(0, n, 4):
        z["factual"][r0:r0 + 4] = to_storage(f[r0:r0 + 4], dtype)
        z["alternative"][r0:r0 + 4] = to_storage(a[r0:r0 + 4], dtype)
    return GradientStore(tmp_path), f, a


def test_rows_in_any_order(tmp_path):
    s, f, a = _store(tmp_path)
    assert torch.equal(s.rows("factual", [7, 2, 5]), f[[7, 2, 5]])
    assert torch.equal(s.rows("alternative", [3, 3, 9, 0]), a[[3, 3, 9, 0]])  # repeats, gaps, any order


def test_importance_matches_direct_computation(tmp_path, monkeypatch):
    import gradiend_core.grad_store as gs

    monkeypatch.setattr(gs, "COL_SHARD", 64)  # several column blocks
    s, f, a = _store(tmp_path)
    rows = [1, 4, 9]
    for kind in ("factual", "alternative", "diff"):
        want = assemble(kind, f[rows], a[rows]).mean(0).abs()
        assert torch.allclose(mean_abs_importance(s, rows, kind), want, atol=1e-6)


def test_topk_ties_keep_lowest_indices():
    scores = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0])
    assert topk_indices(scores, 2).tolist() == [1, 2]
    assert topk_indices(scores, 10).tolist() == [0, 1, 2, 3, 4]


def test_topk_equals_stable_descending_sort_definition():
    """The selection-based top-k picks exactly what a stable descending sort's first k would."""
    def by_sort(scores, k):
        return torch.sort(torch.sort(scores, descending=True, stable=True).indices[:k]).values

    g = torch.Generator().manual_seed(0)
    for n, k in [(10, 3), (1000, 17), (5000, 2500), (7, 1), (64, 63)]:
        ties = torch.randint(0, 5, (n,), generator=g).float()  # mostly ties
        with_nan = torch.rand(n, generator=g)
        with_nan[::7] = float("nan")
        for scores in (ties, torch.rand(n, generator=g), with_nan):
            assert torch.equal(topk_indices(scores, k), by_sort(scores, k)), (n, k)


def test_compact_keeps_exactly_the_selected_columns(tmp_path):
    s, f, a = _store(tmp_path / "src", n=9, dim=200)
    keep = torch.tensor([0, 5, 17, 63, 64, 150, 199])
    compact(s, tmp_path / "dst", keep)
    c = GradientStore(tmp_path / "dst")
    assert (c.n_rows, c.dim) == (9, 7)
    assert torch.equal(c.rows("factual", range(9)), f[:, keep])
    assert torch.equal(c.rows("alternative", range(9)), a[:, keep])
