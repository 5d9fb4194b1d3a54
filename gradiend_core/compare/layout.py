"""One base-global index space for several GRADIENDs, and each GRADIEND's weights of one part in it.

A ParamMap's base-global index is the position of an entry in the concatenation of the map's tensors
at full size. GRADIENDs built from the same selection (the usual case, pruned or not) share it; maps
that list different tensors do not. `common_layout` therefore lays out the union of the tensors
(order of first appearance) and `aligned_index` re-bases each map's entries into it; when every map
lists the same tensors, the common index IS each map's base-global index.

Everything is sparse: a GRADIEND contributes only its kept dims (sorted int64 index arrays); no
vector of the base model's size is built. n = kept dims of one GRADIEND, C = values per dim.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from gradiend_core.errors import ConfigError, ModelError
from gradiend_core.gradiend import Gradiend
from gradiend_core.model import PARTS, resolve_k, topk_indices
from gradiend_core.param_map import ParamMap


@dataclass(frozen=True)
class Layout:
    """The union of the GRADIENDs' base tensors: name, shape and offset of each in the common space."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: np.ndarray  # (T,) int64, cumsum of the full sizes

    @property
    def size(self) -> int:
        return int(self.offsets[-1] + int(np.prod(self.shapes[-1]))) if self.names else 0

    def tensor_of(self, index: np.ndarray) -> np.ndarray:
        """Tensor number (into `names`) of each common index (n,) -> (n,) int64."""
        return np.searchsorted(self.offsets, np.asarray(index, dtype=np.int64), side="right") - 1

    def decode(self, index: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(tensor name, flat position in the tensor) of each common index."""
        t = self.tensor_of(index)
        return [self.names[i] for i in t], np.asarray(index, dtype=np.int64) - self.offsets[t]


def common_layout(gradiends: Mapping[str, Gradiend]) -> Layout:
    """The union of the maps' tensors; ModelError when the GRADIENDs are not on one base model."""
    shapes: dict[str, tuple[int, ...]] = {}
    digests = {g.base.digest for g in gradiends.values() if g.base is not None and g.base.digest}
    if len(digests) > 1:
        raise ModelError("the GRADIENDs were trained on different base models (weights digests differ); "
                         "compare GRADIENDs of one base model")
    for gid, g in gradiends.items():
        for s in g.param_map.specs:
            if shapes.setdefault(s.name, s.shape) != s.shape:
                raise ModelError(f"tensor {s.name!r} has shape {s.shape} in GRADIEND {gid!r} but "
                                 f"{shapes[s.name]} in another; compare GRADIENDs of one base model")
    sizes = np.array([int(np.prod(sh)) for sh in shapes.values()], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if len(sizes) else sizes
    return Layout(tuple(shapes), tuple(shapes.values()), offsets)


def aligned_index(pmap: ParamMap, layout: Layout) -> np.ndarray:
    """Common index of every local input dim (P,) int64, in local order (not necessarily sorted)."""
    where = {n: i for i, n in enumerate(layout.names)}
    parts = [layout.offsets[where[s.name]] + s.positions().numpy() for s in pmap.specs]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class PartVectors:
    """One GRADIEND's weights of one part over its kept dims, sorted by common index.

    values: the signed weights per dim (n, C): encoder-weight W_e[:, i] and decoder-weight W_d[i, :]
    (C = L), decoder-bias b_d[i] and decoder-sum sum_l W_d[i, l] + b_d[i] (C = 1).
    importance: GradiendModel.weight_importance(part) per dim (n,), the reference's top-k score.
    """

    index: np.ndarray  # (n,) int64 sorted unique
    values: np.ndarray  # (n, C) float64
    importance: np.ndarray  # (n,) float32

    def __len__(self) -> int:
        return int(self.index.size)

    def take(self, rows: np.ndarray) -> "PartVectors":
        """The dims at positions `rows` (a bool mask or sorted positions)."""
        return PartVectors(self.index[rows], self.values[rows], self.importance[rows])

    def topk(self, k: int | float | None) -> "PartVectors":
        """The k most important dims (int, or a fraction of n; ties: lowest index), still index-sorted."""
        if k is None:
            return self
        keep = topk_indices(torch.from_numpy(self.importance), resolve_k(k, len(self))).numpy()
        return self.take(np.sort(keep))


def _part_values(g: Gradiend, part: str) -> torch.Tensor:
    m = g.model
    if part == "encoder-weight":
        return m.encoder.weight.detach().T  # (P, L)
    if part == "decoder-weight":
        return m.decoder.weight.detach()  # (P, L)
    return m.update_vector(part).reshape(-1, 1)  # (P, 1): decoder-bias | decoder-sum


def part_vectors(g: Gradiend, part: str, layout: Layout) -> PartVectors:
    """`g`'s weights of `part` over its kept dims in the common layout."""
    if part not in PARTS:
        raise ConfigError(f"unknown weight part {part!r}; use one of: {', '.join(PARTS)}")
    index = aligned_index(g.param_map, layout)  # (P,)
    values = _part_values(g, part).to("cpu", torch.float64).numpy()  # (P, C)
    importance = g.model.weight_importance(part).numpy()  # (P,) float32
    order = np.argsort(index, kind="stable")
    return PartVectors(index[order], values[order], importance[order])
