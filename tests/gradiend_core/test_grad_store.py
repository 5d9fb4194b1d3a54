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


def test_column_chunks_split_the_width_evenly_so_no_padding_is_stored(tmp_path, monkeypatch):
    """Zarr pads edge chunks to full size: 1Mi-column chunks of a 2.26M-dim store stored 3.1M columns a
    row (38% padding). Chunks now split the width evenly; zero rows (neutral rows' alternative) still
    read back."""
    from gradiend_core import grad_store
    from gradiend_core.grad_store import col_width, for_writing

    assert col_width(2_256_538, 1_048_576) == 752_180 and col_width(300, 1_048_576) == 300
    assert col_width(1000, 128) == 125 and col_width(1001, 128) == 126  # 8 chunks: at most 7 padded columns
    monkeypatch.setattr(grad_store, "COL_CHUNK", 128)
    monkeypatch.setattr(grad_store, "COL_SHARD", 128)
    n, dim = 8, 1000
    x = torch.randn(n, dim).half()
    x[5:] = 0  # all-zero rows are written too (write_empty_chunks)
    z = create_store(tmp_path / "gradients.zarr", n, dim, "float16", 1, "none", shard_rows=4)
    for r0 in (0, 4):
        for_writing(z["factual"])[r0:r0 + 4] = to_storage(x[r0:r0 + 4], "float16")
    s = GradientStore(tmp_path)
    assert s.block_cols == 125 and list(s.col_blocks())[-1] == (875, 1000)
    assert torch.equal(s.rows("factual", range(n)), x.float())
    shards = [p for p in (tmp_path / "gradients.zarr" / "factual" / "c").rglob("*") if p.is_file()]
    assert len(shards) == 2 * 8
    index = 4 * 16 + 4  # (4 chunks x (offset, length) uint64) + crc32c per shard
    assert sum(p.stat().st_size for p in shards) == n * dim * 2 + len(shards) * index
