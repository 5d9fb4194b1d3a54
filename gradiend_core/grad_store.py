"""The gradient store: per-example factual and alternative gradients in Zarr, plus a parquet row index.

Layout of a store directory:
  gradients.zarr/factual       (N, P)  one row per example (neutral rows included)
  gradients.zarr/alternative   (N, P)  zeros for rows without an alternative (neutral rows)
  gradients.zarr/factual_scale, alternative_scale   (N, ceil(P / 4096)) float32: stored value x the
                               scale of its row's 4096-column block = gradient (`quantize` / `dequantize`)
  rows.parquet                 row -> split, classes, label, kind, n_tokens

Scales: float16 values are scaled before the cast, per row and block of SCALE_COLS columns, by a power of
two that puts the block's largest |value| in [2^14, 2^15), so a block keeps float16's full 11-bit
precision down to 2^-29 of its maximum instead of flushing small gradients. Measured on the default
experiment (bench/stored_precision.py): unscaled, 0.004% of the nonzero values were stored as 0 and 0.54%
as subnormals at the pre-pruned width, 21% and 32% with pre-pruning off; one scale per row still left
0.14% and 30% with pre-pruning off (a row spans ~2^40 of magnitudes), one per 4096 columns 0% and 0.02%.
Powers of two make scaling and un-scaling exact, so the stored bytes are float16(g / s) and a reader
gets exactly that x s. float32 and bfloat16 (float32's exponent range) are stored with scale 1. Every
reader goes through `GradientStore.rows_cols`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch

from .errors import ConfigError, StoreError

StorageDtype = Literal["float16", "bfloat16", "float32"]
KINDS = ("factual", "alternative")
SCALE_SUFFIX = "_scale"  # (N, blocks) float32 array per kind: stored value x its block's scale = gradient
SCALE_COLS = 4096  # columns per scale (bench/stored_precision.py: one scale per row still flushed values)
FP16_TOP = 15  # a float16 row is scaled so that its largest |value| lies in [2^14, 2^15) (max 65504)
COL_SHARD = 1_048_576  # columns per shard file and per column block of streamed reads
COL_CHUNK = COL_SHARD  # columns per inner chunk (see the module docstring)


def _codec(compression: str):
    from zarr.codecs import BloscCodec, ZstdCodec

    if compression == "blosc-zstd":
        return [BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")]
    if compression == "zstd":
        return [ZstdCodec(level=1)]
    if compression == "none":
        return None
    raise ConfigError(f"unknown compression '{compression}'; use blosc-zstd, zstd or none")


def to_storage(x: torch.Tensor, dtype: StorageDtype) -> np.ndarray:
    """(n, P) float tensor -> numpy array in the storage representation."""
    x = x.detach().to("cpu")
    if dtype == "bfloat16":
        return x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    if dtype == "float16":
        return x.to(torch.float16).numpy()
    if dtype == "float32":
        return x.to(torch.float32).numpy()
    raise ConfigError(f"unknown storage dtype '{dtype}'; use float16, bfloat16 or float32")


def block_scales(x: torch.Tensor, dtype: StorageDtype, cols: int = SCALE_COLS) -> torch.Tensor:
    """(n, ceil(P / cols)) float32 scale per block of `cols` columns of each row of `x` (n, P): 2^(e - 15)
    where the block's max |value| = m 2^e, m in [0.5, 1), for float16; 1 for float32 and bfloat16, and
    for blocks that are all zero or not finite."""
    n, p = x.shape
    nb = max(-(-p // cols), 1)  # (a store of 0 columns still has one scale a row)
    scale = torch.ones(n, nb, dtype=torch.float32)
    if dtype != "float16" or n == 0 or p == 0:
        return scale
    a = x.detach().abs().float().cpu()
    full = p // cols
    amax = a[:, :full * cols].reshape(n, full, cols).amax(dim=2)  # (n, full)
    if full < nb:
        amax = torch.cat([amax, a[:, full * cols:].amax(dim=1, keepdim=True)], dim=1)
    e = torch.frexp(amax).exponent
    ok = torch.isfinite(amax) & (amax > 0)
    shift = (e - FP16_TOP).clamp(-126, 126)  # 2^shift stays a normal float32
    return torch.where(ok, torch.ldexp(scale, shift), scale)


def scale_columns(scale: torch.Tensor, c0: int, c1: int, cols: int = SCALE_COLS) -> torch.Tensor:
    """(n, c1 - c0) float32: each column's block scale, for columns [c0, c1) of rows with block scales
    `scale` (n, blocks)."""
    b0, b1 = c0 // cols, -(-c1 // cols)
    return scale[:, b0:b1].repeat_interleave(cols, dim=1)[:, c0 - b0 * cols:c1 - b0 * cols]


def quantize(x: torch.Tensor, dtype: StorageDtype, cols: int = SCALE_COLS) -> tuple[np.ndarray, np.ndarray]:
    """(n, P) float tensor -> (storage array (n, P), scales (n, ceil(P / cols)) float32): `dequantize`
    inverts it up to the storage dtype's rounding. Scaled row by row (one float32 row copy at a time)."""
    scale = block_scales(x, dtype, cols)
    if bool((scale == 1).all()):
        return to_storage(x, dtype), scale.numpy()
    x = x.detach().to("cpu")
    out = np.empty(tuple(x.shape), dtype=np.float16)
    for i in range(x.shape[0]):
        row = x[i:i + 1].float() / scale_columns(scale[i:i + 1], 0, x.shape[1], cols)  # powers of two: exact
        out[i] = to_storage(row, dtype)
    return out, scale.numpy()


def dequantize(a: np.ndarray, scale, dtype: str, c0: int = 0, cols: int = SCALE_COLS) -> torch.Tensor:
    """Storage array (n, w) of columns [c0, c0 + w) and its rows' block scales (n, blocks) (None: 1) ->
    float32 gradients (n, w)."""
    x = from_storage(a, dtype)
    if scale is not None:
        s = torch.as_tensor(scale, dtype=torch.float32)
        if not bool((s == 1).all()):
            scale_blocks_(x, s, c0, cols)
    return x


def scale_blocks_(x: torch.Tensor, scale: torch.Tensor, c0: int, cols: int = SCALE_COLS) -> None:
    """x (n, w) (columns [c0, c0 + w)) *= each column's block scale, in place, block by block. No (n, w)
    scale tensor: a 2-row read of the default store took 36 ms with one (`scale_columns`), 17-19 ms so,
    15-17 ms for the read and cast alone. Powers of two: exact."""
    w = x.shape[1]
    head = min(-c0 % cols, w)  # columns before the first block boundary
    if head:
        x[:, :head].mul_(scale[:, c0 // cols, None])
    b, k = (c0 + head) // cols, (w - head) // cols  # first whole block, whole blocks
    if k:
        x[:, head:head + k * cols].unflatten(1, (k, cols)).mul_(scale[:, b:b + k, None])
    if head + k * cols < w:
        x[:, head + k * cols:].mul_(scale[:, b + k, None])


def from_storage(a: np.ndarray, dtype: str) -> torch.Tensor:
    """Storage array -> float32 tensor."""
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # zarr may hand out read-only buffers; torch wants writable memory
        a = a.copy()
    if dtype == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).float()
    return torch.from_numpy(a).float()


def create_store(path: Path, n_rows: int, dim: int, dtype: StorageDtype = "float16",
                 chunk_rows: int = 16, compression: str = "blosc-zstd", kinds=KINDS, attrs=None,
                 shard_rows: int | None = None):
    """Create empty (n_rows, dim) arrays for each kind; returns the zarr group.

    Inner chunks are (chunk_rows, at most 1Mi columns, `col_width`); shards group `shard_rows` rows x
    that many columns, and writers always write whole shard-row blocks (through `for_writing`).
    """
    import zarr

    np_dtype = {"float16": "float16", "bfloat16": "uint16", "float32": "float32"}.get(dtype)
    if np_dtype is None:
        raise ConfigError(f"unknown storage dtype '{dtype}'; use float16, bfloat16 or float32")
    group = zarr.open_group(str(path), mode="w")
    col_chunk = col_width(dim, COL_CHUNK)
    col_shard = min(max(COL_SHARD // col_chunk, 1) * col_chunk, -(-dim // col_chunk) * col_chunk)
    for kind in kinds:
        group.create_array(
            kind, shape=(n_rows, dim), dtype=np_dtype, chunks=(chunk_rows, col_chunk),
            shards=(shard_rows or chunk_rows, col_shard), compressors=_codec(compression), fill_value=0,
            attributes={"logical_dtype": dtype, **(attrs or {})})
        # one chunk per written row block, so row shards write disjoint files; fill 1: unscaled
        blocks = max(-(-dim // SCALE_COLS), 1)
        group.create_array(kind + SCALE_SUFFIX, shape=(n_rows, blocks), dtype="float32",
                           chunks=(shard_rows or chunk_rows, blocks), compressors=None, fill_value=1.0,
                           attributes={"scale_cols": SCALE_COLS})
    return group


def store_rows(group, kind: str, r0: int, data: np.ndarray, scale: np.ndarray) -> None:
    """Rows [r0, r0 + len(data)) of `kind`: the storage array and the rows' block scales (whole row blocks)."""
    for_writing(group[kind])[r0:r0 + len(data)] = data
    for_writing(group[kind + SCALE_SUFFIX])[r0:r0 + len(data)] = np.asarray(scale, dtype=np.float32)


def for_writing(array):
    """`array` with zarr's write_empty_chunks on: a runtime setting (not stored), so every writer applies it.

    Otherwise zarr compares each chunk with the fill value before writing it (as raw bytes, through
    numpy's string comparison), and that check was most of the write time: a row of the default
    2.26M-dim float16 store took 26 ms to write, 4.5 ms with the check off (and even column chunks,
    `col_width`). All-zero chunks (neutral rows' alternative gradients) are then stored like any other.
    """
    return array.with_config({"write_empty_chunks": True})


def col_width(dim: int, most: int) -> int:
    """Columns per chunk: at most `most`, and as even a split of `dim` as that allows. Zarr stores edge
    chunks padded to full size, so 1Mi-column chunks of the default 2.26M-dim store wrote 3.1M columns
    (38% padding) per row; three chunks of 752,180 columns write 2.26M."""
    n = -(-dim // most)  # chunks per row
    return -(-dim // n)


@dataclass
class GradientStore:
    """Read access to a gradient store directory (`gradients.zarr` inside `root`)."""

    root: Path

    def __post_init__(self) -> None:
        import zarr

        self.root = Path(self.root)
        zpath = self.root / "gradients.zarr"
        if not zpath.exists():
            raise StoreError(f"no gradient store at {zpath}; re-run extract-gradients")
        self.group = zarr.open_group(str(zpath), mode="r")
        a = self.group["factual"]
        self.n_rows, self.dim = a.shape
        self.chunk_rows = a.chunks[0]
        self.block_rows = (a.shards or a.chunks)[0]  # rows written together
        self.block_cols = (a.shards or a.chunks)[1]  # columns per shard file
        self.dtype = a.attrs.get("logical_dtype", "float32")
        # (N, blocks) float32 per kind, or None: unscaled (a store written before scales existed)
        self.scales = {k: torch.from_numpy(np.asarray(self.group[k + SCALE_SUFFIX][:], dtype=np.float32))
                       if k + SCALE_SUFFIX in self.group else None for k in KINDS}
        self.scale_cols = int(self.group["factual" + SCALE_SUFFIX].attrs.get("scale_cols", SCALE_COLS)) \
            if self.scales["factual"] is not None else SCALE_COLS

    def array(self, kind: str):
        if kind not in KINDS:
            raise ConfigError(f"unknown gradient kind '{kind}'; use factual or alternative")
        return self.group[kind]

    def rows(self, kind: str, idx) -> torch.Tensor:
        """(len(idx), P) float32 for the given row indices (any order, repeats allowed)."""
        return self.rows_cols(kind, idx, 0, self.dim)

    def col_blocks(self, width: int | None = None) -> Iterator[tuple[int, int]]:
        """[c0, c1) column ranges of `width` (default: one shard file's columns, so no read straddles two)."""
        width = width or self.block_cols
        for c0 in range(0, self.dim, width):
            yield c0, min(c0 + width, self.dim)

    def rows_cols(self, kind: str, idx, c0: int, c1: int) -> torch.Tensor:
        """(len(idx), c1-c0) float32 gradients (un-scaled) of rows `idx` (any order) and columns [c0, c1).

        Reads each run of consecutive rows as one slice: zarr's orthogonal (list) indexing costs
        ~20x more per row than plain slices.
        """
        idx = np.asarray(list(idx), dtype=np.int64)
        uniq = np.unique(idx)
        a = self.array(kind)
        parts, start = [], 0
        for k in range(1, len(uniq) + 1):
            if k == len(uniq) or uniq[k] != uniq[k - 1] + 1:  # end of a run of consecutive rows
                parts.append(a[int(uniq[start]):int(uniq[k - 1]) + 1, c0:c1])
                start = k
        scale = self.scales[kind]
        scale = None if scale is None else scale[torch.from_numpy(idx)]
        if len(parts) == 1 and np.array_equal(uniq, idx):  # one ordered run (the usual batch): no copies
            return dequantize(parts[0], scale, self.dtype, c0, self.scale_cols)
        block = np.concatenate(parts) if parts else np.zeros((0, c1 - c0), dtype=a.dtype)
        return dequantize(block[np.searchsorted(uniq, idx)], scale, self.dtype, c0, self.scale_cols)

def assemble(kind: str, g_f: torch.Tensor, g_a: torch.Tensor) -> torch.Tensor:
    """source/target vector from factual and alternative gradients."""
    if kind == "factual":
        return g_f
    if kind == "alternative":
        return g_a
    if kind == "diff":
        return g_f - g_a
    raise ConfigError(f"unknown gradient kind '{kind}'; use factual, alternative or diff")


def mean_abs_importance(store: GradientStore, rows, source: str) -> torch.Tensor:
    """|mean over `rows` of the source gradient| (P,), streamed in column blocks (bounded memory)."""
    out = torch.empty(store.dim, dtype=torch.float32)
    for c0, c1 in store.col_blocks():
        g_f = store.rows_cols("factual", rows, c0, c1) if source in ("factual", "diff") else None
        g_a = store.rows_cols("alternative", rows, c0, c1) if source in ("alternative", "diff") else None
        if source == "diff":
            block = g_f - g_a
        else:
            block = g_f if g_f is not None else g_a
        out[c0:c1] = block.mean(dim=0).abs()
    return out


def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, sorted ascending; ties keep the lowest indices.

    Selection around the k-th largest value (O(P)) instead of sorting all P scores: the same
    indices, ~10x faster at P = 22.5M (a full-model pre-prune).
    """
    n = scores.numel()
    k = max(1, min(int(k), n))
    if k == n:
        return torch.arange(n)
    if torch.isnan(scores).any():  # NaN ranks above every number (as in a descending sort)
        order = torch.sort(scores, descending=True, stable=True).indices[:k]
        return torch.sort(order).values
    kth = torch.kthvalue(scores, n - k + 1).values  # the k-th largest score
    above = torch.nonzero(scores > kth).squeeze(1)  # fewer than k of them
    ties = torch.nonzero(scores == kth).squeeze(1)[:k - above.numel()]  # ascending: lowest indices first
    return torch.sort(torch.cat([above, ties])).values


def compact(src: GradientStore, dst_root: Path, keep: torch.Tensor, compression: str = "blosc-zstd",
            progress=None) -> None:
    """Write a store holding only the kept columns, reading the source once in row x column blocks.
    The kept values are read un-scaled and stored again (`quantize`): the compact store's column blocks
    are not the source's, so their scales are new."""
    keep = keep.to(torch.int64)
    # one-row inner chunks: training reads scattered single rows from the compact store
    dst = create_store(dst_root / "gradients.zarr", src.n_rows, int(keep.numel()), src.dtype,
                       1, compression, shard_rows=src.block_rows)
    bounds = [(c0, c1) for c0, c1 in src.col_blocks()]
    # kept positions split per source column block: keep is sorted
    cuts = torch.searchsorted(keep, torch.tensor([c0 for c0, _ in bounds] + [src.dim]))
    for kind in KINDS:
        for r0 in range(0, src.n_rows, src.block_rows):
            r1 = min(r0 + src.block_rows, src.n_rows)
            parts = []
            for b, (c0, c1) in enumerate(bounds):
                sel = keep[cuts[b]:cuts[b + 1]]
                if sel.numel():
                    parts.append(src.rows_cols(kind, range(r0, r1), c0, c1)[:, sel - c0])
            store_rows(dst, kind, r0, *quantize(torch.cat(parts, dim=1), src.dtype))
            if progress:
                progress(r1, src.n_rows)
