"""Reading a published stage output through its manifest: where its files are, what it recorded.

A manifest (gradiend_core.store) has `path` (the output directory on this host), `stage`, `key` and
`info` (what the stage's build returned). Stages pass manifests to each other, never data.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .devices import place_model
from .errors import StoreError
from .io import read_json
from .lm import load_base_model


def out_path(manifest: dict) -> Path:
    return Path(manifest["path"])


def info(manifest: dict) -> dict:
    return manifest.get("info", {})


def model_dir(model_manifest: dict) -> Path:
    """prepare-model's model: its own `model/` when a head was fitted, else the source directory."""
    i = info(model_manifest)
    return out_path(model_manifest) / "model" if i["head"] is not None else Path(i["source_dir"])


def store_dir(pre_prune_manifest: dict) -> Path:
    """The gradient store training reads: pre-prune's compact store, or extract's when pruning is off."""
    i = info(pre_prune_manifest)
    return out_path(pre_prune_manifest).parents[1] / i["store_stage"] / i["store_key"]


def load_prepared_model(model_manifest: dict, device=None, dtype: str = "float32"):
    """The base LM recorded by prepare-model (with its objective), checked against its recorded digest,
    then moved to `device` (a torch.device; None: CPU) in `dtype` (its digest stays the float32 one)."""
    i = info(model_manifest)
    base = load_base_model(model_dir(model_manifest), allow_missing_head=False,
                           objective=i.get("objective", "auto"))
    if base.digest != i["digest"]:
        raise StoreError(f"model files in {model_dir(model_manifest)} changed since prepare-model recorded digest "
                         f"{i['digest'][:12]} (now {base.digest[:12]}); re-run to refresh prepare-model")
    base.name_or_path = i["name_or_path"]
    if device is not None or dtype != "float32":
        place_model(base.model, device or torch.device("cpu"), dtype)
    return base


def read_manifest_json(manifest: dict, rel: str):
    p = out_path(manifest) / rel
    if not p.exists():
        raise StoreError(f"{p} is missing; the output is incomplete, re-run the flow to recompute it")
    return read_json(p)
