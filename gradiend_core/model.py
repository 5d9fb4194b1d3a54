"""The GRADIEND encoder-decoder: h = act_enc(W_e x + b_e), x_hat = act_dec(W_d h + b_d).

P = input dim (selected base-parameter entries), L = latent dim, G = GRADIEND batch.
Init follows the reference: the encoder uses PyTorch's default Linear init, i.e. weight and bias
~ U(-1/sqrt(P), 1/sqrt(P)); the decoder weight AND bias are then drawn from U(-m, m) with
m = max(W_e), so the decoder is scaled like the encoder rather than like an L->P Linear.

Deviation from the reference: `latent_dim` and the activation names are honoured (the reference's
trainer silently forces L=1, tanh/id).
Deviation from the reference: an "id" encoder activation is a real nn.Identity (the reference uses
LayerNorm(1), a constant-0 encoding for L=1 and a shape error for L>1).
Deviation from the reference: activation names are case-insensitive for the decoder too, ReLU /
LeakyReLU are not in-place, and "identity" / "hardtanh" are accepted aliases.
Deviation from the reference: top-k ties are broken deterministically (lowest index wins), as in the
reference's streaming pre-prune path, instead of torch.topk's unspecified tie order.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from gradiend_core.errors import ConfigError

PARTS = ("encoder-weight", "decoder-weight", "decoder-bias", "decoder-sum")

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leakyrelu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "smht": nn.Hardtanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "id": nn.Identity,
}
_ALIASES = {"identity": "id", "hardtanh": "smht", "none": "id", "linear": "id"}
ACTIVATIONS = tuple(_ACTIVATIONS)


def canonical_activation(name: str) -> str:
    """Normalise an activation name (case-insensitive, aliases); ConfigError if unknown."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {name!r}; use one of: {', '.join(ACTIVATIONS)}"
        )
    return key


def make_activation(name: str) -> nn.Module:
    return _ACTIVATIONS[canonical_activation(name)]()


def _check_part(part: str) -> str:
    if part not in PARTS:
        raise ConfigError(f"unknown weight part {part!r}; use one of: {', '.join(PARTS)}")
    return part


def _generator(seed: int | None) -> torch.Generator | None:
    # A private generator keeps the global RNG untouched when a seed is given.
    if seed is None:
        return None
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


class GradiendModel(nn.Module):
    """One-hidden-layer (L units) autoencoder over P gradient entries.

    `init=False` skips initialisation (weights are torch.empty); used when the caller fills the
    weights itself (checkpoint loading, pruning), so no RNG is consumed.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int = 1,
        activation_encoder: str = "tanh",
        activation_decoder: str = "id",
        bias_decoder: bool = True,
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        *,
        init: bool = True,
    ):
        super().__init__()
        if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
            raise ConfigError(f"input_dim must be a positive int, got {input_dim!r}; select at least one parameter")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ConfigError(f"latent_dim must be a positive int, got {latent_dim!r}; use latent_dim >= 1")
        self.activation_encoder = canonical_activation(activation_encoder)
        # Reference rule: a falsy decoder activation reuses the encoder's.
        self.activation_decoder = canonical_activation(activation_decoder or activation_encoder)
        self.bias_decoder = bool(bias_decoder)
        # skip_init: allocate without running nn.Linear's init (which would draw from the global RNG).
        self.encoder = nn.utils.skip_init(nn.Linear, input_dim, latent_dim, bias=True, dtype=dtype)
        self.decoder = nn.utils.skip_init(nn.Linear, latent_dim, input_dim, bias=self.bias_decoder, dtype=dtype)
        self.act_enc = make_activation(self.activation_encoder)
        self.act_dec = make_activation(self.activation_decoder)
        if init:
            self.reset_parameters(seed)

    # ------------------------------------------------------------------ construction
    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        """Reference init; `seed` uses a private generator, None uses the global RNG."""
        g = _generator(seed)
        bound = 1.0 / math.sqrt(self.input_dim)  # = nn.Linear default (kaiming_uniform a=sqrt(5))
        self.encoder.weight.uniform_(-bound, bound, generator=g)  # (L, P)
        self.encoder.bias.uniform_(-bound, bound, generator=g)  # (L,)
        m = float(self.encoder.weight.max())  # the reference's decoder scale (about 1/sqrt(P))
        if m <= 0:  # every encoder weight <= 0 (likely only for a few input dims, e.g. pre_prune.topk: 1): the
            m = float(self.encoder.weight.abs().max()) or bound  # reference's U(-m, m) would be empty and fail
        self.decoder.weight.uniform_(-m, m, generator=g)  # (P, L)
        if self.decoder.bias is not None:
            self.decoder.bias.uniform_(-m, m, generator=g)  # (P,)

    @property
    def input_dim(self) -> int:
        return self.encoder.in_features

    @property
    def latent_dim(self) -> int:
        return self.encoder.out_features

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.weight.dtype

    def architecture(self) -> dict:
        """JSON-able constructor arguments (what a checkpoint stores)."""
        return {
            "input_dim": self.input_dim,
            "latent_dim": self.latent_dim,
            "activation_encoder": self.activation_encoder,
            "activation_decoder": self.activation_decoder,
            "bias_decoder": self.bias_decoder,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    # ------------------------------------------------------------------ forward
    def _as_input(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.shape[-1] != self.input_dim:
            raise ConfigError(
                f"GRADIEND input has last dim {x.shape[-1]}, expected {self.input_dim}; "
                "build gradients with the same parameter map as the model"
            )
        return x.to(dtype=self.dtype, device=self.encoder.weight.device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (G,P) | (P,) -> h (G,L) | (L,)."""
        return self.act_enc(self.encoder(self._as_input(x)))

    def decode(self, h: torch.Tensor | float | Sequence[float]) -> torch.Tensor:
        """h (G,L) | (L,) | scalar -> x_hat (G,P) | (P,). A scalar is broadcast to all L units."""
        w = self.decoder.weight
        if isinstance(h, (int, float)):
            h = torch.full((self.latent_dim,), float(h), dtype=w.dtype, device=w.device)
        else:
            h = torch.as_tensor(h, dtype=w.dtype, device=w.device)
            if h.dim() == 0:
                h = h.expand(self.latent_dim)
        if h.shape[-1] != self.latent_dim:
            raise ConfigError(f"latent code has last dim {h.shape[-1]}, expected {self.latent_dim}; "
                              "pass one value per latent unit")
        return self.act_dec(self.decoder(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (G,P) -> (x_hat (G,P) on the decoder's device, h (G,L)); an unbatched (P,) input gives ((P,), (L,))."""
        h = self.encode(x)
        return self.act_dec(self.decoder(h.to(self.decoder.weight.device))), h

    def place(self, encoder: torch.device, decoder: torch.device | None = None) -> "GradiendModel":
        """Move the encoder to `encoder` and the decoder to `decoder` (default: the encoder's device), in
        place: the reference's split of a wide GRADIEND over two devices (forward moves h across)."""
        self.encoder.to(encoder)
        self.decoder.to(decoder if decoder is not None else encoder)
        return self

    # ------------------------------------------------------------------ weight analysis
    @torch.no_grad()
    def weight_importance(self, part: str = "decoder-weight") -> torch.Tensor:
        """Per-input-dim importance (P,) float32 on CPU.

        encoder-weight: sum_l |W_e[l,i]|; decoder-weight: sum_l |W_d[i,l]|; decoder-bias: |b_d[i]|;
        decoder-sum: |sum_l W_d[i,l] + b_d[i]|.
        """
        _check_part(part)
        if part == "encoder-weight":
            imp = self.encoder.weight.abs().sum(0)
        elif part == "decoder-weight":
            imp = self.decoder.weight.abs().sum(1)
        elif part == "decoder-bias":
            imp = self._decoder_bias().abs()
        else:
            imp = (self.decoder.weight.sum(1) + self._decoder_bias()).abs()
        return imp.detach().to(device="cpu", dtype=torch.float32)

    def _decoder_bias(self) -> torch.Tensor:
        b = self.decoder.bias
        return b if b is not None else torch.zeros(self.input_dim, dtype=self.dtype, device=self.decoder.weight.device)

    @torch.no_grad()
    def update_vector(self, part: str = "decoder-sum") -> torch.Tensor:
        """Flat weight vector for a fixed-direction rewrite.

        decoder-weight: W_d flattened (P*L); decoder-bias: b_d (P,) (zeros without bias);
        decoder-sum: W_d.sum(1) + b_d (P,); encoder-weight: W_e flattened (L*P).
        """
        _check_part(part)
        if part == "decoder-weight":
            v = self.decoder.weight.reshape(-1)
        elif part == "decoder-bias":
            v = self._decoder_bias()
        elif part == "decoder-sum":
            v = self.decoder.weight.sum(1) + self._decoder_bias()
        else:
            v = self.encoder.weight.reshape(-1)
        return v.detach().clone()

    def topk_local(self, part: str, k: int | float, importance: torch.Tensor | None = None) -> torch.Tensor:
        """Local indices of the k most important input dims, ordered by importance desc.

        int k: absolute (clipped to P); float k in (0, 1]: ceil(k*P) clipped to [1, P].
        """
        imp = self.weight_importance(part) if importance is None else _check_importance(importance, self.input_dim)
        return topk_indices(imp, resolve_k(k, imp.numel()))

    # ------------------------------------------------------------------ pruning
    @torch.no_grad()
    def keep_mask(
        self,
        mask: torch.Tensor | None = None,
        threshold: float | None = None,
        topk: int | float | None = None,
        part: str = "decoder-weight",
        importance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sorted local indices to keep. Order (reference): mask -> threshold -> top-k among survivors."""
        P = self.input_dim
        active = torch.ones(P, dtype=torch.bool)
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
            if mask.shape != (P,):
                raise ConfigError(f"prune mask has shape {tuple(mask.shape)}, expected ({P},); pass one bool per input dim")
            active &= mask
        if threshold is not None or topk is not None:
            imp = self.weight_importance(_check_part(part)) if importance is None else _check_importance(importance, P)
            if threshold is not None:
                if threshold < 0:
                    raise ConfigError(f"prune threshold must be >= 0, got {threshold}")
                active &= imp >= threshold
            if topk is not None:
                idx = active.nonzero().squeeze(1)  # (n_active,)
                k = resolve_k(topk, idx.numel())
                chosen = idx[topk_indices(imp[idx], k)]
                active = torch.zeros(P, dtype=torch.bool)
                active[chosen] = True
        return active.nonzero().squeeze(1)

    @torch.no_grad()
    def select_inputs(self, keep: torch.Tensor) -> "GradiendModel":
        """A physically smaller copy holding only input dims `keep` (sorted unique local indices)."""
        keep = _check_keep(keep, self.input_dim)
        new = GradiendModel(int(keep.numel()), self.latent_dim, self.activation_encoder, self.activation_decoder,
                            self.bias_decoder, self.dtype, init=False).to(self.encoder.weight.device)
        new.encoder.weight.copy_(self.encoder.weight[:, keep])  # (L, P')
        new.encoder.bias.copy_(self.encoder.bias)  # (L,) unchanged: it does not depend on inputs
        new.decoder.weight.copy_(self.decoder.weight[keep])  # (P', L)
        if self.decoder.bias is not None:
            new.decoder.bias.copy_(self.decoder.bias[keep])
        return new

    @torch.no_grad()
    def invert_(self) -> "GradiendModel":
        """Negate W_e, b_e, W_d, b_d in place: the encoding flips sign exactly for odd activations."""
        for p in (self.encoder.weight, self.encoder.bias, self.decoder.weight, self.decoder.bias):
            if p is not None:
                p.neg_()
        return self


# ---------------------------------------------------------------------- helpers
def resolve_k(k: int | float, n: int) -> int:
    """int k -> min(k, n); float k in (0,1] -> ceil(k*n) clipped to [1, n] (0 when n == 0)."""
    if isinstance(k, bool):
        raise ConfigError(f"top-k must be an int or a float fraction, got {k!r}")
    if isinstance(k, int):
        if k < 0:
            raise ConfigError(f"top-k must be >= 0, got {k}")
        return min(k, n)
    if isinstance(k, float):
        if not 0.0 < k <= 1.0:
            raise ConfigError(f"a float top-k is a fraction and must be in (0, 1], got {k}; use an int for a count")
        kk = math.ceil(k * n)
        return min(max(kk, 1), n)
    raise ConfigError(f"top-k must be an int or a float fraction, got {type(k).__name__}")


def topk_indices(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest values, ordered by value desc then index asc (deterministic ties)."""
    n = values.numel()
    if k <= 0:
        return torch.zeros(0, dtype=torch.long)
    if k >= n:
        return torch.sort(values, descending=True, stable=True).indices
    kth = torch.topk(values, k, sorted=False).values.min()
    above = (values > kth).nonzero().squeeze(1)
    ties = (values == kth).nonzero().squeeze(1)[: k - above.numel()]  # lowest indices win ties
    idx = torch.cat([above, ties]).sort().values
    order = torch.sort(values[idx], descending=True, stable=True).indices
    return idx[order]


def _check_importance(importance: torch.Tensor, P: int) -> torch.Tensor:
    imp = torch.as_tensor(importance).detach().to("cpu", torch.float32).reshape(-1)
    if imp.numel() != P:
        raise ConfigError(f"importance has {imp.numel()} entries, expected {P}; pass one score per input dim")
    return imp


def _check_keep(keep: torch.Tensor, P: int) -> torch.Tensor:
    keep = torch.as_tensor(keep, dtype=torch.long).reshape(-1).cpu()
    if keep.numel() == 0:
        raise ConfigError("pruning would remove every input dimension; relax the mask/threshold/top-k")
    if bool((keep[1:] <= keep[:-1]).any()) or int(keep[0]) < 0 or int(keep[-1]) >= P:
        raise ConfigError(f"keep indices must be sorted, unique and in [0, {P}); sort and deduplicate them")
    return keep
