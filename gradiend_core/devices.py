"""Where the base model and the GRADIEND run, and in which precision (model.device, model.dtype,
train.device, train.decoder_device).

A device setting is a string: "auto" (cuda if available, else mps if available, else cpu), "cpu",
"cuda" (= cuda:0), "cuda:N" or "mps". `parse_device` checks the spelling only (config validation,
no hardware); `resolve_device` turns it into a torch.device on THIS host and fails with one line when
the device is not there; `check_dtype` runs a tiny forward+backward in the dtype on the device, so a
dtype the device cannot run is refused before any stage. Results are computed wherever the host says;
stored gradients always go to CPU.
"""
from __future__ import annotations

import re

import torch

from .errors import ConfigError

AUTO = "auto"
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_DTYPE = "float32"
_SPEC = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def parse_device(spec: str, where: str) -> str:
    """The device setting, checked for spelling only (no hardware is looked at)."""
    if not isinstance(spec, str) or not _SPEC.fullmatch(spec.strip().lower()):
        raise ConfigError(f"{where}: unknown device {spec!r}; use {DEVICE_HELP}")
    return spec.strip().lower()


def torch_dtype(name: str, where: str = "model.dtype") -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"{where}: unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def _has_mps() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str, where: str = "model.device") -> torch.device:
    """The torch.device `spec` names on this host; ConfigError (one line, with the fix) when it is not here."""
    spec = parse_device(spec, where)
    if spec == AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        return torch.device("mps") if _has_mps() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not _has_mps():
            raise ConfigError(f"{where}: mps is not available on this host (no Apple GPU or torch without MPS); "
                              f"set {where}=auto or cpu")
        return torch.device("mps")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        raise ConfigError(f"{where}: {spec} requested but CUDA is not available on this host (torch "
                          f"{torch.__version__}); set {where}=auto or cpu, or install a CUDA build of torch")
    if index >= n:
        raise ConfigError(f"{where}: {spec} requested but this host has {n} CUDA device(s) (cuda:0..cuda:{n - 1}); "
                          f"use one of them or {where}=auto")
    return torch.device("cuda", index)


def resolve_decoder_device(encoder: torch.device, spec: str | None,
                           where: str = "train.decoder_device") -> torch.device:
    """The GRADIEND decoder's device: None = the encoder's; "auto" = the reference's split (encoder on
    cuda:0, decoder on cuda:1) when the encoder is on CUDA and there are >= 2 GPUs, else the encoder's."""
    if spec is None:
        return encoder
    if parse_device(spec, where) == AUTO:
        if encoder.type == "cuda" and torch.cuda.device_count() >= 2:
            return torch.device("cuda", 1 if encoder.index in (0, None) else 0)
        return encoder
    return resolve_device(spec, where)


def check_dtype(device: torch.device, name: str, where: str = "model.dtype") -> None:
    """Run a tiny matmul, layer norm and softmax, forward and backward, in `name` on `device`;
    ConfigError naming the fix when the device cannot."""
    dtype = torch_dtype(name, where)
    try:
        x = torch.ones((2, 8), dtype=dtype, device=device, requires_grad=True)
        w = torch.full((8, 4), 0.5, dtype=dtype, device=device)
        y = torch.nn.functional.layer_norm(x @ w, (4,)).softmax(-1)
        y.float().sum().backward()
        if not bool(torch.isfinite(x.grad.float()).all()):
            raise RuntimeError("non-finite result")
    except (RuntimeError, TypeError, NotImplementedError) as e:
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ConfigError(f"{where}: {name} cannot run on {device} ({msg}); use {where}=float32"
                          f"{' or bfloat16' if name != 'bfloat16' else ''}, or another device") from None


def place_model(model, device: torch.device, dtype_name: str = DEFAULT_DTYPE):
    """`model` moved to `device` and cast to `dtype_name`, in place (a no-op for CPU float32)."""
    dtype = torch_dtype(dtype_name)
    if any(p.device != device or p.dtype != dtype for p in model.parameters()):
        model.to(device=device, dtype=dtype)
    return model


def describe(device: torch.device) -> str:
    """A device as recorded in a manifest's info: "cpu", "cuda:0 (NVIDIA H200)", "mps"."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def check_config(cfg) -> None:
    """The preflight of an ExperimentConfig: every device setting names a device of this host and
    model.dtype runs on model.device (the GRADIEND trains in float32). One-line ConfigError otherwise."""
    device = resolve_device(cfg.model.device, "model.device")
    check_dtype(device, cfg.model.dtype, "model.dtype")
    encoder = resolve_device(cfg.train.device, "train.device") if cfg.train.device else device
    resolve_decoder_device(encoder, cfg.train.decoder_device)
