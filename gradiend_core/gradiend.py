"""A trained GRADIEND bound to its parameter map, plus the weight rewrite of a base model.

Rewrite rule (reference): theta'[sel] = theta[sel] + lr * Delta, with Delta = decoder(ff) =
act_dec(W_d ff + b_d) for part="decoder" (bias included), or a fixed weight vector for the other
parts. lr is never sign-flipped; the orientation comes only from the feature factor ff.

Feature factor to strengthen class C (reference): ff = +direction[C] when source == "alternative",
ff = -direction[C] when source is "factual" or "diff". To weaken C the reference uses the feature
factors of the *other* classes; `feature_factor(C, strengthen=False)` returns the factor of the
other target class (the one other class with a non-zero direction).

Deviation from the reference: `invert()` and `prune()` return new objects instead of mutating, and
`applied()` offers an in-place rewrite that restores the saved original entries bit-exactly (the
reference deep-copies the base model for every (ff, lr) cell).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import nn

from gradiend_core.errors import ConfigError, ModelError
from gradiend_core.model import GradiendModel, _check_keep
from gradiend_core.param_map import ParamMap

KINDS = ("factual", "alternative", "diff")
DECODER_PARTS = ("decoder", "decoder-weight", "decoder-bias", "decoder-sum", "encoder-weight")

FeatureFactor = float | Sequence[float] | torch.Tensor


@dataclass(frozen=True)
class BaseIdentity:
    """Which base model a GRADIEND was trained on: its id/path and its weights digest."""

    name_or_path: str
    digest: str


@dataclass
class Gradiend:
    """A GradiendModel plus the ParamMap that defines its input space and its training context."""

    model: GradiendModel
    param_map: ParamMap
    source: str = "alternative"
    target: str = "diff"
    directions: dict[str, int] = field(default_factory=dict)  # class -> +1 / -1 / 0
    base: BaseIdentity | None = None
    training: dict | None = None

    def __post_init__(self):
        if self.model.input_dim != self.param_map.input_dim:
            raise ModelError(f"GRADIEND input_dim {self.model.input_dim} != parameter map P={self.param_map.input_dim}; "
                             "build the model with param_map.input_dim")
        for kind, v in (("source", self.source), ("target", self.target)):
            if v not in KINDS:
                raise ConfigError(f"{kind} must be one of {', '.join(KINDS)}, got {v!r}")
        self.directions = {str(k): int(v) for k, v in (self.directions or {}).items()}

    # ------------------------------------------------------------------ encoder side
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Gradient vectors (G,P) | (P,) -> encodings (G,L) | (L,)."""
        return self.model.encode(x)

    def topk(self, part: str = "decoder-weight", k: int | float = 1000) -> torch.Tensor:
        """Base-global indices of the k most important input dims (importance desc)."""
        return self.param_map.to_global(self.model.topk_local(part, k))

    def prune(self, mask: torch.Tensor | None = None, threshold: float | None = None,
              topk: int | float | None = None, part: str = "decoder-weight",
              importance: torch.Tensor | None = None, keep_local: torch.Tensor | None = None) -> "Gradiend":
        """New Gradiend with a physically smaller model and the matching map (mask -> threshold -> topk).

        `keep_local` (sorted unique local indices) bypasses the selection rules.
        """
        if keep_local is not None:
            keep = _check_keep(keep_local, self.model.input_dim)
        else:
            keep = self.model.keep_mask(mask=mask, threshold=threshold, topk=topk, part=part, importance=importance)
        return dataclasses.replace(
            self, model=self.model.select_inputs(keep), param_map=self.param_map.select(keep),
            directions=dict(self.directions), training=copy.deepcopy(self.training),
        )

    def invert(self, update_direction: bool = True) -> "Gradiend":
        """New Gradiend with W_e, b_e, W_d, b_d negated (and the class directions, if asked)."""
        dirs = {c: -d for c, d in self.directions.items()} if update_direction else dict(self.directions)
        return dataclasses.replace(self, model=copy.deepcopy(self.model).invert_(), directions=dirs,
                                   training=copy.deepcopy(self.training))

    def pair(self) -> tuple[str, str]:
        """(the +1 class, the -1 class) of the GRADIEND's training pair."""
        pos = [c for c, d in self.directions.items() if d > 0]
        neg = [c for c, d in self.directions.items() if d < 0]
        if len(pos) != 1 or len(neg) != 1:
            raise ConfigError(f"this GRADIEND has no class pair (directions {self.directions}); load a trained one")
        return pos[0], neg[0]

    # ------------------------------------------------------------------ decoder side
    def feature_factor(self, cls: str, strengthen: bool = True) -> float:
        """Feature factor that strengthens `cls` (reference rule); strengthen=False: the other target class's."""
        if cls not in self.directions:
            raise ConfigError(f"unknown class {cls!r}; known classes: {', '.join(self.directions) or 'none'}")
        if not strengthen:
            others = [c for c, d in self.directions.items() if c != cls and d != 0]
            if len(others) != 1:
                raise ConfigError(f"cannot weaken {cls!r}: need exactly one other target class, found {others}; "
                                  "pass the feature factor of the class to strengthen instead")
            cls = others[0]
        d = float(self.directions[cls])
        return d if self.source == "alternative" else -d

    @torch.no_grad()
    def delta(self, feature_factor: FeatureFactor = 1.0, part: str = "decoder") -> torch.Tensor:
        """Update direction Delta (P,) float32: decoder(ff) incl. bias, or the fixed vector of `part`."""
        if part not in DECODER_PARTS:
            raise ConfigError(f"unknown rewrite part {part!r}; use one of: {', '.join(DECODER_PARTS)}")
        if part == "decoder":
            v = self.model.decode(feature_factor)
        else:
            v = self.model.update_vector(part)
            if v.numel() != self.model.input_dim:
                raise ConfigError(f"part {part!r} gives {v.numel()} values for P={self.model.input_dim} inputs "
                                  f"(latent_dim={self.model.latent_dim}); use part='decoder' or 'decoder-sum'")
        return v.detach().reshape(-1).to(device="cpu", dtype=torch.float32)

    @torch.no_grad()
    def rewrite(self, base_model: nn.Module, lr: float, feature_factor: FeatureFactor = 1.0,
                part: str = "decoder") -> nn.Module:
        """A deep copy of `base_model` with theta[sel] += lr * Delta; the original is untouched."""
        delta = self.delta(feature_factor, part)
        self.param_map.check_model(base_model)
        new = copy.deepcopy(base_model)
        self.param_map.scatter_add_(new, delta, float(lr))
        return new

    @contextlib.contextmanager
    def applied(self, base_model: nn.Module, lr: float, feature_factor: FeatureFactor = 1.0,
                part: str = "decoder") -> Iterator[nn.Module]:
        """Apply the rewrite in place for the `with` body, then restore the saved entries bit-exactly."""
        delta = self.delta(feature_factor, part)
        self.param_map.check_model(base_model)
        params = dict(base_model.named_parameters(remove_duplicate=False))
        saved = self.param_map.gather(params)  # (P,) copy of the original selected entries, their dtype
        try:
            self.param_map.scatter_add_(base_model, delta, float(lr))
            yield base_model
        finally:
            self.param_map.scatter_copy_(base_model, saved)
