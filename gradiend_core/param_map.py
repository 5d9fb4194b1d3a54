"""Which base-model parameter entries form the GRADIEND input vector, and how to move data in/out.

A ParamMap is an ordered list of ParamSpecs (one per base tensor). The selected entries of each
tensor (flat, C order) are concatenated in map order into the (P,) input vector. The base-global
index of an entry is its position in the concatenation of ALL map tensors at full size; it does not
change under pruning (a spec whose selection becomes empty stays in the map for that reason).

Include patterns keep every match, like the reference's `params` (only its `param_map` wildcard keeps
the first match). Deviation from the reference: a pattern that matches nothing is an error, and an
`exclude` list can drop tensors from the selection.
"""
from __future__ import annotations

import bisect
import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from gradiend_core.errors import ConfigError, ModelError
from gradiend_core.io import canonical_json

_INT32_MAX = 2**31 - 1


@dataclass(frozen=True, eq=False)
class ParamSpec:
    """One base tensor: `indices` are sorted unique flat positions, None = every entry."""

    name: str
    shape: tuple[int, ...]
    indices: torch.Tensor | None = None

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.indices is not None:
            idx = torch.as_tensor(self.indices, dtype=torch.long).reshape(-1).cpu()
            if idx.numel() == self.numel and self.numel > 0 and _is_arange(idx):
                idx = None  # a full selection is stored as "all"
            object.__setattr__(self, "indices", idx)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def n_selected(self) -> int:
        return self.numel if self.indices is None else int(self.indices.numel())

    @property
    def repr(self) -> str:
        """Storage form (reference rule): all | indices (if k*bpi < 0.8*numel) | mask."""
        k = self.n_selected
        if k == self.numel:
            return "all"
        bpi = 4 if self.numel <= _INT32_MAX else 8
        return "indices" if k * bpi < 0.8 * self.numel else "mask"

    def positions(self) -> torch.Tensor:
        """Selected flat positions (n_selected,) int64."""
        return torch.arange(self.numel) if self.indices is None else self.indices

    def positions_at(self, rel: torch.Tensor) -> torch.Tensor:
        """Flat positions of the selection entries `rel` (no (numel,) table for an "all" spec)."""
        return rel.clone() if self.indices is None else self.indices[rel]


def _is_arange(idx: torch.Tensor) -> bool:
    return bool(torch.equal(idx, torch.arange(idx.numel())))


class ParamMap:
    """Ordered parameter specs; defines the layout of the GRADIEND input vector (P,)."""

    def __init__(self, specs: Sequence[ParamSpec]):
        self.specs: list[ParamSpec] = list(specs)
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ConfigError("parameter map lists a tensor twice; give each parameter once")
        self._by_name = {s.name: s for s in self.specs}
        self.base_offsets: dict[str, int] = {}
        self._local_starts: list[int] = []  # start of each spec in local (P) space
        base = local = 0
        for s in self.specs:
            self.base_offsets[s.name] = base
            self._local_starts.append(local)
            base += s.numel
            local += s.n_selected
        self._base_starts = list(self.base_offsets.values())
        self.input_dim: int = local
        self.unpruned_length: int = base

    # ------------------------------------------------------------------ basic info
    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, name: str) -> ParamSpec:
        return self._by_name[name]

    def __repr__(self) -> str:
        return f"ParamMap({len(self.specs)} tensors, P={self.input_dim}, unpruned={self.unpruned_length})"

    def _segments(self) -> Iterable[tuple[ParamSpec, int, int]]:
        """(spec, local start, n_selected) for every spec."""
        for s, start in zip(self.specs, self._local_starts):
            yield s, start, s.n_selected

    # ------------------------------------------------------------------ index spaces
    def local_to_global(self) -> torch.Tensor:
        """Base-global index of every local input dim (P,) int64."""
        parts = [self.base_offsets[s.name] + s.positions() for s in self.specs]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def to_global(self, local: torch.Tensor) -> torch.Tensor:
        """Base-global indices for some local indices (any order), without building the full (P,) table."""
        local = torch.as_tensor(local, dtype=torch.long).reshape(-1).cpu()
        if local.numel() and (int(local.min()) < 0 or int(local.max()) >= self.input_dim):
            raise ConfigError(f"local index out of range [0, {self.input_dim})")
        out = torch.empty_like(local)
        starts = torch.tensor(self._local_starts, dtype=torch.long)
        seg = torch.searchsorted(starts, local, right=True) - 1  # spec index of each local idx
        for i in seg.unique().tolist():
            s, sel = self.specs[i], seg == i
            out[sel] = self.base_offsets[s.name] + s.positions_at(local[sel] - self._local_starts[i])
        return out

    def decode_global(self, idx: int) -> dict:
        """Base-global index -> {param, shape, flat_index, coords, selected}."""
        idx = int(idx)
        if not 0 <= idx < self.unpruned_length:
            raise ConfigError(f"base-global index {idx} out of range [0, {self.unpruned_length})")
        i = bisect.bisect_right(self._base_starts, idx) - 1
        while self.specs[i].numel == 0:  # skip empty tensors sharing an offset
            i += 1
        s = self.specs[i]
        flat = idx - self._base_starts[i]
        coords = tuple(int(c) for c in torch.unravel_index(torch.tensor(flat), s.shape)) if s.shape else ()
        selected = s.indices is None or bool((s.indices == flat).any())
        return {"param": s.name, "shape": s.shape, "flat_index": flat, "coords": coords, "selected": selected}

    def select(self, keep_local: torch.Tensor) -> "ParamMap":
        """Pruned map keeping local dims `keep_local` (sorted unique); base-global indices unchanged."""
        keep = torch.as_tensor(keep_local, dtype=torch.long).reshape(-1).cpu()
        if keep.numel() and (bool((keep[1:] <= keep[:-1]).any()) or int(keep[0]) < 0
                             or int(keep[-1]) >= self.input_dim):
            raise ConfigError(f"keep_local must be sorted, unique and in [0, {self.input_dim})")
        specs = []
        for s, start, n in self._segments():
            lo, hi = torch.searchsorted(keep, torch.tensor([start, start + n])).tolist()
            seg_keep = keep[lo:hi] - start  # positions within this spec's selection
            specs.append(ParamSpec(s.name, s.shape, s.positions_at(seg_keep)))
        return ParamMap(specs)

    # ------------------------------------------------------------------ data movement
    def gather(self, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
        """Flat selected entries of full-shape tensors, map order -> (P,) (always a fresh tensor)."""
        parts = []
        for s in self.specs:
            t = tensors.get(s.name)
            if t is None:
                raise ModelError(f"tensor {s.name!r} is missing; the parameter map needs every listed tensor")
            _check_shape(s, t)
            flat = t.detach().reshape(-1)
            parts.append(flat if s.indices is None else flat[s.indices.to(flat.device)])
        if not parts:
            return torch.zeros(0, dtype=dtype or torch.float32)
        out = torch.cat([p.to(dtype) if dtype is not None else p for p in parts])
        return out

    def gather_grads(self, model: nn.Module, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(P,) vector of the selected entries of each mapped parameter's .grad (run backward first)."""
        params = _named_params(model)
        grads = {}
        for s in self.specs:
            p = _get_param(params, s.name)
            if p.grad is None:
                raise ModelError(
                    f"parameter {s.name!r} has no .grad; call loss.backward() with requires_grad=True on mapped params"
                )
            grads[s.name] = p.grad
        return self.gather(grads, dtype=dtype)

    @torch.no_grad()
    def scatter_add_(self, model: nn.Module, delta: torch.Tensor, scale: float = 1.0) -> None:
        """In place theta[sel] += scale * delta[slice] for every mapped parameter."""
        delta = self._check_vector(delta)
        for p, s, seg in self._param_segments(model, delta):
            step = scale * seg.to(device=p.device, dtype=p.dtype)  # rounded once, then added: = theta + lr*delta
            flat = p.view(-1)
            if s.indices is None:
                flat.add_(step)
            else:
                idx = s.indices.to(p.device)
                flat[idx] = flat[idx] + step

    @torch.no_grad()
    def scatter_copy_(self, model: nn.Module, values: torch.Tensor) -> None:
        """In place theta[sel] = values[slice] (bit-exact restore of a gather())."""
        values = self._check_vector(values)
        for p, s, seg in self._param_segments(model, values):
            flat = p.view(-1)
            seg = seg.to(device=p.device, dtype=p.dtype)
            if s.indices is None:
                flat.copy_(seg)
            else:
                flat[s.indices.to(p.device)] = seg

    def _check_vector(self, v: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(v).reshape(-1)
        if v.numel() != self.input_dim:
            raise ConfigError(f"update vector has {v.numel()} entries, expected P={self.input_dim}; "
                              "use a vector built with this parameter map")
        return v

    def _param_segments(self, model: nn.Module, v: torch.Tensor):
        params = _named_params(model)
        for s, start, n in self._segments():
            p = _get_param(params, s.name)
            _check_shape(s, p)
            if not p.is_contiguous():
                raise ModelError(f"parameter {s.name!r} is not contiguous; call .contiguous() on the model's weights")
            yield p, s, v[start:start + n]

    def check_model(self, model: nn.Module) -> None:
        """ModelError unless every mapped parameter exists in `model` with the recorded shape."""
        params = _named_params(model)
        for s in self.specs:
            _check_shape(s, _get_param(params, s.name))

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> dict:
        """{"param_map": [{name, shape, repr, num_selected, key}], unpruned_length, input_dim}."""
        rows = []
        for i, s in enumerate(self.specs):
            r = s.repr
            rows.append({"name": s.name, "shape": list(s.shape), "repr": r, "num_selected": s.n_selected,
                         "key": None if r == "all" else f"L{i}"})
        return {"param_map": rows, "input_dim": self.input_dim, "unpruned_length": self.unpruned_length}

    def tensors(self) -> dict[str, torch.Tensor]:
        """Selection tensors by key: int64 flat positions (repr indices) or a uint8 mask of the param's shape."""
        out = {}
        for row, s in zip(self.to_json()["param_map"], self.specs):
            if row["repr"] == "indices":
                out[row["key"]] = s.indices.clone()
            elif row["repr"] == "mask":
                m = torch.zeros(s.numel, dtype=torch.uint8)
                m[s.indices] = 1
                out[row["key"]] = m.reshape(s.shape)
        return out

    @classmethod
    def from_json(cls, d: Mapping, tensors: Mapping[str, torch.Tensor]) -> "ParamMap":
        specs = []
        for row in d["param_map"]:
            shape, r, key = tuple(row["shape"]), row["repr"], row.get("key")
            if r == "all":
                idx = None
            else:
                if key not in tensors:
                    raise ModelError(f"mapping tensor {key!r} for {row['name']!r} is missing; the checkpoint is incomplete")
                t = tensors[key]
                if r == "mask":
                    if tuple(t.shape) != shape:
                        raise ModelError(f"mapping mask {key!r} for {row['name']!r} has shape {tuple(t.shape)}, "
                                         f"expected {shape}; the checkpoint is corrupted")
                    idx = t.reshape(-1).bool().nonzero().squeeze(1)
                else:
                    idx = t.to(torch.long).reshape(-1)
            spec = ParamSpec(row["name"], shape, idx)
            if spec.n_selected != int(row["num_selected"]):
                raise ModelError(f"mapping for {row['name']!r} selects {spec.n_selected} entries, config says "
                                 f"{row['num_selected']}; the checkpoint is corrupted")
            specs.append(spec)
        return cls(specs)

    def digest(self) -> str:
        """sha256 over names, shapes and selected positions."""
        h = hashlib.sha256(canonical_json([[s.name, list(s.shape)] for s in self.specs]).encode())
        for s in self.specs:
            h.update(b"all" if s.indices is None else s.indices.numpy().tobytes())
        return h.hexdigest()


# ---------------------------------------------------------------------- model helpers
def _named_params(model: nn.Module) -> dict[str, torch.Tensor]:
    # remove_duplicate=False: a tied tensor is reachable under every one of its names.
    return dict(model.named_parameters(remove_duplicate=False))


def _get_param(params: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    p = params.get(name)
    if p is None:
        close = difflib.get_close_matches(name, list(params), n=3)
        raise ModelError(f"base model has no parameter {name!r} (close: {', '.join(close) or 'none'}); "
                         "use the base model the parameter map was built for")
    return p


def _check_shape(s: ParamSpec, t: torch.Tensor) -> None:
    if tuple(t.shape) != s.shape:
        raise ModelError(f"parameter {s.name!r} has shape {tuple(t.shape)} but the map expects {s.shape}; "
                         "use the base model the GRADIEND was built for")


def backbone_module(model: nn.Module) -> nn.Module:
    """The transformer body: getattr(model, model.base_model_prefix), else model.base_model, else model."""
    prefix = getattr(model, "base_model_prefix", None)
    body = getattr(model, prefix, None) if prefix else None
    if isinstance(body, nn.Module):
        return body
    body = getattr(model, "base_model", None)
    return body if isinstance(body, nn.Module) else model


def backbone_parameters(model: nn.Module, backbone: nn.Module | None = None) -> list[tuple[str, nn.Parameter]]:
    """Full-model names of backbone params, model order; tied tensors appear once (first name).
    backbone: the body module (the model's objective says which; default backbone_module(model))."""
    ids = {id(p) for p in (backbone if backbone is not None else backbone_module(model)).parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) in ids]


def pattern_regex(pattern: str) -> re.Pattern:
    """`*` matches any run of characters (dots included); everything else is literal; full match."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def _close_names(pattern: str, names: list[str]) -> list[str]:
    """Suggestions for a pattern that matched nothing: similar names and similar group wildcards."""
    groups = sorted({".".join(n.split(".")[:i]) + ".*" for n in names for i in range(1, n.count(".") + 1)})
    core = pattern.strip("*")
    loose = [n for n in names if core and pattern_regex(f"*{core}*").fullmatch(n)]
    close = difflib.get_close_matches(pattern, groups + names, n=5, cutoff=0.5)
    close += difflib.get_close_matches(core, names, n=3, cutoff=0.5)
    return list(dict.fromkeys(loose[:3] + close))[:6]


def _match(patterns: list[str], names: list[str], kind: str, head_names: list[str]) -> set[str]:
    hit: set[str] = set()
    for pat in patterns:
        rx = pattern_regex(pat)
        found = {n for n in names if rx.fullmatch(n)}
        if not found:
            where = " (it matches only LM-head parameters, which are never selected)" if any(
                rx.fullmatch(n) for n in head_names) else ""
            close = _close_names(pat, names)
            raise ConfigError(
                f"{kind} pattern {pat!r} matches no selectable parameter{where}; close names: "
                f"{', '.join(close) or 'none'}; patterns are full matches with '*' wildcards"
            )
        hit |= found
    return hit


def select_parameters(model: nn.Module, include: list[str] | None = None,
                      exclude: list[str] | None = None, backbone: nn.Module | None = None) -> ParamMap:
    """ParamMap over the backbone parameters (embeddings included, LM head excluded), filtered by patterns.

    include: keep only names matching one of these; exclude: then drop names matching one of these.
    Model order is kept. Each selected tensor is taken whole ("all"). backbone: the body module whose
    parameters are selectable (`Objective.backbone(model)`; default backbone_module(model)).
    """
    core = backbone_parameters(model, backbone)
    names = [n for n, _ in core]
    head = [n for n, _ in model.named_parameters() if n not in set(names)]
    if isinstance(include, str) or isinstance(exclude, str):
        raise ConfigError("include/exclude must be lists of patterns, not a single string; wrap it in [...]")
    keep = set(names)
    if include:
        keep = _match(list(include), names, "include", head)
    if exclude:
        keep -= _match(list(exclude), names, "exclude", head)
    specs = [ParamSpec(n, tuple(p.shape)) for n, p in core if n in keep]
    if not specs or sum(s.numel for s in specs) == 0:
        raise ConfigError("the include/exclude patterns select no parameter; loosen them")
    return ParamMap(specs)


# ----------------------------------------------------------------------------- on disk

def save_param_map(directory: Path, pmap: ParamMap) -> None:
    """param_map.json, and param_map.safetensors with the selected indices of every pruned tensor."""
    from safetensors.torch import save_file

    from gradiend_core.io import atomic_write_json

    atomic_write_json(directory / "param_map.json", pmap.to_json())
    tensors = pmap.tensors()
    if tensors:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "param_map.safetensors"))


def load_param_map(directory: Path) -> ParamMap:
    """The map `save_param_map` wrote into `directory`."""
    from safetensors.torch import load_file

    from gradiend_core.io import read_json

    t = directory / "param_map.safetensors"
    return ParamMap.from_json(read_json(directory / "param_map.json"), load_file(str(t)) if t.exists() else {})
