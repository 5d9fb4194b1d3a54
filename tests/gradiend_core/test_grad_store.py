"""The Zarr gradient store: exact round trips, bf16 bits, streaming importance, compaction."""
import numpy as np
import pytest
import torch

from gradiend_core.grad_store import (GradientStore, assemble, block_scales, compact, create_store, dequantize,
                                      from_storage, mean_abs_importance, quantize, scale_blocks_, scale_columns, store_rows,
                                      to_storage, topk_indices)


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


def test_block_scales_are_powers_of_two_that_put_the_block_max_just_below_2_15():
    x = torch.tensor([[3e-7, -1e-9, 0.0, 1e5, 2.0], [0.0, 0.0, 0.0, float("inf"), 1.0]])
    s = block_scales(x, "float16", cols=2)  # blocks: columns 0-1, 2-3, 4
    assert s.shape == (2, 3) and s.dtype == torch.float32
    assert s[1, 0] == 1 and s[1, 1] == 1  # zero and non-finite blocks: unscaled
    for i, b, cols in ((0, 0, [0, 1]), (0, 1, [2, 3]), (0, 2, [4]), (1, 2, [4])):
        assert torch.frexp(s[i, b:b + 1]).mantissa.item() == 0.5  # a power of two
        assert 2 ** 14 <= x[i, cols].abs().max() / s[i, b] < 2 ** 15
    assert torch.equal(scale_columns(s, 1, 5, cols=2), s[:, [0, 1, 1, 2]])
    for unscaled in ("float32", "bfloat16"):
        assert torch.equal(block_scales(x, unscaled), torch.ones(2, 1))


def wide_range_rows(n=6, dim=4000, seed=0):
    """Gradient-like rows: magnitudes spread over 10^-14 .. 10^-4 (float16 unscaled flushes most of them)."""
    g = torch.Generator().manual_seed(seed)
    mag = 10 ** (-14 + 10 * torch.rand(n, dim, generator=g))
    return mag * torch.sign(torch.randn(n, dim, generator=g))


def test_scaled_float16_error_bound_and_nothing_flushed_within_range():
    x = wide_range_rows()
    data, scale = quantize(x, "float16")
    back = dequantize(data, scale, "float16")
    assert torch.equal(back, dequantize(*quantize(x, "float16"), "float16"))  # deterministic
    s = scale_columns(torch.as_tensor(scale), 0, x.shape[1])  # (n, P): each entry's block scale
    normal = x.abs() >= s * 2.0 ** -14  # float16's normal range at the block's scale
    rel = (back - x).abs() / x.abs()
    assert float(rel[normal].max()) <= 2.0 ** -11  # round to nearest, 11 significant bits
    in_range = x.abs() >= s * 2.0 ** -24  # representable at all at its block's scale (smallest subnormal)
    assert not bool((back[in_range] == 0).any())
    row_err = (back - x).norm(dim=1) / x.norm(dim=1)
    assert float(row_err.max()) <= 2.0 ** -11
    unscaled = from_storage(to_storage(x, "float16"), "float16")
    assert float(((unscaled == 0) & (x != 0)).float().mean()) > 0.4  # what scaling fixes
    assert float(((unscaled - x).norm(dim=1) / x.norm(dim=1)).min()) > 2 * float(row_err.max())


def test_tiny_model_gradients_scaled_store_reads_back_unscaled(tmp_path):
    """Real per-example gradients of a tiny model, stored as scaled float16: every reader gets values within
    float16 rounding of the float32 gradients, never the raw scaled numbers."""
    from gradiend_core.gradients import GradientExtractor
    from gradiend_core.lm import BaseLM
    from gradiend_core.objectives import get_objective
    from gradiend_core.param_map import select_parameters
    from gradiend_core.testing import tiny_mlm

    model, tok = tiny_mlm(seed=0)
    base = BaseLM(model, tok, get_objective("mlm"), "tiny", "0" * 64, None)
    ex = GradientExtractor(base, select_parameters(model))
    masked = ["[MASK] went to school .", "the dog saw [MASK] .", "[MASK] saw the cat .", "we saw [MASK] ."]
    g_f, g_a = ex.pair_gradients(masked, ["he", "her", "they", "them"], ["they", "them", "he", "her"])  # (4, P)
    n, dim = g_f.shape
    z = create_store(tmp_path / "gradients.zarr", n, dim, "float16", 1, "none", shard_rows=2)
    for kind, g in (("factual", g_f), ("alternative", g_a)):
        for r0 in (0, 2):
            store_rows(z, kind, r0, *quantize(g[r0:r0 + 2], "float16"))
    s = GradientStore(tmp_path)
    assert not bool((s.scales["factual"] == 1).all())  # scaled: raw values would be off by these factors
    for kind, g in (("factual", g_f), ("alternative", g_a)):
        got = s.rows(kind, [3, 0, 2, 1])
        want = g[[3, 0, 2, 1]]
        assert float(((got - want).norm(dim=1) / want.norm(dim=1)).max()) <= 2.0 ** -11
        in_range = want.abs() >= scale_columns(s.scales[kind][[3, 0, 2, 1]], 0, dim) * 2.0 ** -24
        assert bool(in_range.any()) and not bool((got[in_range] == 0).any())  # nothing flushed within range
        assert torch.equal(s.rows_cols(kind, [1, 1], 5, 50), dequantize(*quantize(g[[1, 1]], "float16"),
                                                                         "float16")[:, 5:50])
    want = assemble("diff", s.rows("factual", [0, 3]), s.rows("alternative", [0, 3])).mean(0).abs()
    assert torch.equal(mean_abs_importance(s, [0, 3], "diff"), want)
    keep = torch.tensor([0, 7, dim - 1])
    compact(s, tmp_path / "dst", keep)
    kept = s.rows("alternative", range(n))[:, keep]  # stored again with the compact store's block scales
    assert torch.equal(GradientStore(tmp_path / "dst").rows("alternative", range(n)),
                       dequantize(*quantize(kept, "float16"), "float16"))


def test_block_scaling_in_place_matches_the_per_column_scales():
    g = torch.Generator().manual_seed(1)
    scale = torch.ldexp(torch.ones(3, 5), torch.randint(-20, 3, (3, 5), generator=g))
    x = torch.randn(3, 37, generator=g)
    for c0, c1 in ((0, 37), (3, 37), (8, 16), (9, 11), (16, 37), (5, 6)):  # cols 8: 5 blocks, the last partial
        got = x[:, c0:c1].clone()
        scale_blocks_(got, scale, c0, cols=8)
        assert torch.equal(got, x[:, c0:c1] * scale_columns(scale, c0, c1, cols=8)), (c0, c1)
