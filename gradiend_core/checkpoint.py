"""Save / load a Gradiend as a directory, written atomically (temp dir next to it, then rename).

Layout (format_version 1):
  model.safetensors    encoder.weight (L,P), encoder.bias (L,), decoder.weight (P,L), decoder.bias (P,)
  mapping.safetensors  selection of each pruned tensor, key "L{i}": int64 flat positions (repr
                       "indices") or a uint8 mask of the tensor's shape (repr "mask"); "all" has none
  config.json          {format_version, architecture{...}, mapping{param_map[...]}, base{name_or_path, digest}}
  context.json         {source, target, directions}
  training.json        Gradiend.training (only if present)
The base model's weights are never saved, only its id and weights digest.

Deviation from the reference: plain tensor names (no "encoder.0.linear."), a single mapping file,
context in context.json, a base-weights digest that load checks, and an atomic directory write.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gradiend_core.errors import ModelError
from gradiend_core.gradiend import BaseIdentity, Gradiend
from gradiend_core.io import atomic_write_json, read_json
from gradiend_core.model import GradiendModel
from gradiend_core.param_map import ParamMap

FORMAT_VERSION = 1
FILES = ("config.json", "model.safetensors", "mapping.safetensors", "context.json")


def save_gradiend(g: Gradiend, directory: str | os.PathLike) -> Path:
    """Write `g` to `directory` (replacing any previous content atomically); returns the path."""
    out = Path(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_files(g, tmp)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_files(g: Gradiend, d: Path) -> None:
    m = g.model
    weights = {"encoder.weight": m.encoder.weight, "encoder.bias": m.encoder.bias, "decoder.weight": m.decoder.weight}
    if m.decoder.bias is not None:
        weights["decoder.bias"] = m.decoder.bias
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(d / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in g.param_map.tensors().items()}, str(d / "mapping.safetensors"))
    base = None if g.base is None else {"name_or_path": g.base.name_or_path, "digest": g.base.digest}
    atomic_write_json(d / "config.json", {
        "format_version": FORMAT_VERSION, "architecture": m.architecture(),
        "mapping": g.param_map.to_json(), "base": base,
    })
    atomic_write_json(d / "context.json", {"source": g.source, "target": g.target, "directions": g.directions})
    if g.training is not None:
        atomic_write_json(d / "training.json", g.training)


def _swap_in(tmp: Path, out: Path) -> None:
    # os.replace cannot replace a non-empty directory: move the old one aside first.
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_gradiend(directory: str | os.PathLike, base_model: nn.Module | None = None,
                  expected_digest: str | None = None,
                  digest_fn: Callable[[nn.Module], str] | None = None) -> Gradiend:
    """Load a Gradiend saved by save_gradiend.

    With `expected_digest` (or `base_model`, digested by gradiend_core.lm.weights_digest or `digest_fn`)
    a mismatch with the saved base digest raises ModelError; with `base_model` every mapped parameter
    must exist with the recorded shape.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ModelError(f"GRADIEND checkpoint directory {str(d)!r} does not exist; pass the directory save_gradiend wrote")
    for name in FILES:
        if not (d / name).is_file():
            raise ModelError(f"checkpoint {str(d)!r} is missing {name}; re-save the GRADIEND or use a complete checkpoint")
    cfg = _read_json(d / "config.json")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"checkpoint format_version {cfg.get('format_version')!r} is not supported "
                         f"(expected {FORMAT_VERSION}); re-save it with this version of gradiend-flow")
    model = _load_model(d, cfg["architecture"])
    param_map = ParamMap.from_json(cfg["mapping"], load_file(str(d / "mapping.safetensors")))
    base = BaseIdentity(**cfg["base"]) if cfg.get("base") else None
    _check_base(base, base_model, expected_digest, digest_fn)
    if base_model is not None:
        param_map.check_model(base_model)
    ctx = _read_json(d / "context.json")
    training = _read_json(d / "training.json") if (d / "training.json").is_file() else None
    return Gradiend(model=model, param_map=param_map, source=ctx["source"], target=ctx["target"],
                    directions=ctx.get("directions") or {}, base=base, training=training)


def _read_json(path: Path):
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path.name} in {str(path.parent)!r} is not valid JSON ({e}); re-save the checkpoint") from e


def _load_model(d: Path, arch: dict) -> GradiendModel:
    dtype = getattr(torch, str(arch.get("dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelError(f"checkpoint dtype {arch.get('dtype')!r} is unknown; re-save the checkpoint")
    model = GradiendModel(int(arch["input_dim"]), int(arch["latent_dim"]), arch["activation_encoder"],
                          arch["activation_decoder"], bool(arch["bias_decoder"]), dtype, init=False)
    tensors = load_file(str(d / "model.safetensors"))
    expected = dict(model.state_dict())
    for k in list(expected) + sorted(set(tensors) - set(expected)):  # state_dict order: encoder first
        if k not in tensors:
            raise ModelError(f"model.safetensors lacks tensor {k!r}; the checkpoint is incomplete, re-save it")
        if k not in expected:
            raise ModelError(f"model.safetensors has unexpected tensor {k!r} for architecture {arch}; re-save it")
        if tuple(tensors[k].shape) != tuple(expected[k].shape):
            raise ModelError(f"tensor {k!r} has shape {tuple(tensors[k].shape)} but the architecture needs "
                             f"{tuple(expected[k].shape)}; config.json and model.safetensors disagree, re-save it")
    model.load_state_dict(tensors)
    return model


def _check_base(base: BaseIdentity | None, base_model: nn.Module | None, expected: str | None,
                digest_fn: Callable[[nn.Module], str] | None) -> None:
    if expected is None and base_model is not None:
        fn = digest_fn or _lm_weights_digest()
        expected = fn(base_model) if fn is not None else None
    if expected is None or base is None:
        return  # nothing to compare against
    if expected != base.digest:
        raise ModelError(f"checkpoint was trained on base model {base.digest} but got {expected}; "
                         "load the matching base model or retrain")


def _lm_weights_digest() -> Callable[[nn.Module], str] | None:
    try:
        return importlib.import_module("gradiend_core.lm").weights_digest
    except (ImportError, AttributeError):
        return None
