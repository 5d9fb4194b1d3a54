"""Per-example weight gradients of a padded batch from one forward and one backward per label set.

Autograd sums weight gradients over the batch. Each example's own weight gradient is a small
product of the layer's input X_i and output gradient dY_i, and those are per example even in a
batched pass: rows never interact (attention masks padding out as keys, layer norms are per token),
so one backward of the SUM of the row losses gives every row's dY_i exactly, and dY is 0 at padded
positions. Forward hooks keep each selected layer's input and output; autograd.grad is asked for the
outputs' gradients (not the weights', so it never forms a batch-summed weight gradient); then

  Linear     dW_i = dY_i^T X_i   (out, in)      db_i = sum_t dY_i[t]
  Conv1D     dW_i = X_i^T dY_i   (in, out)      (GPT-2's transposed linear)
  LayerNorm  dg_i = sum_t dY_i[t] * xhat_i[t]   db_i = sum_t dY_i[t]
  Embedding  row r of dW_i = sum of dY_i[t] over positions t with id r

On MiniLM (19 tokens per row, top-10% dims kept, 8 rows per batch, one thread) extraction went from
11.5 to 20.5 rows/s (`bench/extraction_limit.py`): the forward and the activation backward run as
(B*T)-row matmuls instead of 19-row ones, and the LM head's 30522-wide passes run once per batch
instead of once per row.
The input word embedding (tied to the LM decoder) is left to embedding_grad.EmbeddingGrad.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

_KINDS = (nn.Linear, nn.LayerNorm, nn.Embedding)


def _conv1d_type():
    try:  # transformers' GPT-2 style linear: weight (in, out), y = x @ W + b
        from transformers.pytorch_utils import Conv1D
        return Conv1D
    except ImportError:  # pragma: no cover - transformers always ships it
        return None


@dataclass
class _Call:
    """One forward call of a hooked module: its input (B, T, in) or ids, its output, and the output's
    version counter then (an in-place change afterwards would make its gradient another tensor's)."""
    x: torch.Tensor
    y: torch.Tensor
    version: int


class NotHookable(RuntimeError):
    """This model's forward cannot be split into per-layer (input, output gradient) pairs."""


@dataclass
class LayerHooks:
    """Which module owns every selected tensor, and the hooks that keep their inputs and outputs.

    Build with `for_model`; None there means some selected tensor cannot be done this way (the
    caller falls back to one backward per row)."""
    owners: list[tuple[nn.Module, str] | None]   # per spec: (module, "weight"/"bias"); None = skipped spec
    driver: nn.Embedding | None                  # input embedding made a grad leaf when nothing else is
    _calls: dict[int, list[_Call]] = field(default_factory=dict, repr=False)
    _batch: int = 0

    @staticmethod
    def for_model(model: nn.Module, names: list[str], skip: int | None = None) -> "LayerHooks | None":
        """Hooks for the selected tensors `names` (spec order); spec `skip` is formed elsewhere."""
        modules = dict(model.named_modules())
        kinds = _KINDS + tuple(t for t in [_conv1d_type()] if t is not None)
        owners: list[tuple[nn.Module, str] | None] = []
        for i, name in enumerate(names):
            if i == skip:
                owners.append(None)
                continue
            path, _, attr = name.rpartition(".")
            mod = modules.get(path)
            if not isinstance(mod, kinds) or attr not in ("weight", "bias"):
                return None
            if isinstance(mod, nn.Embedding) and type(mod) is not nn.Embedding:
                return None  # a subclass may scale its output or take other inputs (BART's embeddings)
            if isinstance(mod, nn.LayerNorm) and (len(mod.normalized_shape) != 1 or not mod.elementwise_affine):
                return None
            owners.append((mod, attr))
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        if not isinstance(emb, nn.Embedding):
            return None  # nothing to make a grad leaf of
        hooked = {id(o[0]) for o in owners if o is not None}
        # the input embedding drives the backward unless it is hooked here or by the caller (skip)
        driver = None if (id(emb) in hooked or skip is not None) else emb
        return LayerHooks(owners, driver)

    def _modules(self) -> list[nn.Module]:
        seen, mods = set(), []
        for o in self.owners:
            if o is not None and id(o[0]) not in seen:
                seen.add(id(o[0]))
                mods.append(o[0])
        if self.driver is not None and id(self.driver) not in seen:
            mods.append(self.driver)
        return mods

    @contextmanager
    def capture(self, model: nn.Module, batch_size: int):
        """During the forward: no parameter needs a gradient; embeddings become per-example grad
        leaves; every hooked call's input and output are kept (for the backward passes after)."""
        self._calls, self._batch = {}, batch_size

        def keep(module, args, out):
            if isinstance(module, nn.Embedding):
                leaf = out.detach()
                if leaf.shape[0] != batch_size:  # e.g. position embeddings (1, T, H): one copy per row
                    leaf = leaf.expand(batch_size, *leaf.shape[1:]).clone()
                out = leaf.requires_grad_(True)
                x = args[0].expand(batch_size, *args[0].shape[1:]) if args[0].shape[0] != batch_size else args[0]
            else:
                x = args[0].detach()
            self._calls.setdefault(id(module), []).append(_Call(x, out, out._version))
            return out

        handles = [m.register_forward_hook(keep) for m in self._modules()]
        flags = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for p, was in flags:
                p.requires_grad_(was)
            for h in handles:
                h.remove()

    def grad_inputs(self) -> list[torch.Tensor]:
        """The kept outputs, in a fixed order: autograd.grad gives dY for each (see `write`)."""
        calls = [c for m in self._modules() for c in self._calls.get(id(m), [])]
        if not calls:
            raise NotHookable("no hooked module ran in the forward pass")
        if any(c.y._version != c.version for c in calls):
            raise NotHookable("the model modifies a layer's output in place after the layer")
        return [c.y for c in calls]

    def write(self, grads: list[torch.Tensor], specs, out: torch.Tensor) -> None:
        """Write every owned spec's selected entries, per example, into out (B, P) at its map offset."""
        dys, k = {}, 0
        for m in self._modules():
            calls = self._calls.get(id(m), [])
            dys[id(m)] = grads[k:k + len(calls)]
            k += len(calls)
        off = 0
        for spec, owner in zip(specs, self.owners):
            n = spec.n_selected
            if owner is not None and n:
                mod, attr = owner
                pairs = list(zip(self._calls.get(id(mod), []), dys[id(mod)]))
                if not pairs:
                    out[:, off:off + n] = 0  # the module did not run: its gradient is zero
                elif attr == "weight" and not isinstance(mod, (nn.LayerNorm, nn.Embedding)):
                    self._matmul_weight(mod, pairs, spec.indices, out[:, off:off + n])
                else:
                    g = None
                    for call, dy in pairs:
                        part = per_example_grad(mod, attr, call.x, dy)  # (B, *shape)
                        g = part if g is None else g.add_(part)
                    select_into(g.reshape(self._batch, -1), spec.indices, out[:, off:off + n])
            off += n

    def _matmul_weight(self, mod: nn.Module, pairs, indices, out: torch.Tensor) -> None:
        """A Linear/Conv1D weight, one example at a time: its (out, in) product is gathered while it
        is still in cache (with one (B, out, in) bmm instead, the whole extraction ran at 16.0 rows/s
        instead of 20.5)."""
        for i in range(self._batch):
            g = None
            for call, dy in pairs:
                part = per_example_grad(mod, "weight", call.x[i:i + 1], dy[i:i + 1])  # (1, *shape)
                g = part if g is None else g.add_(part)
            select_into(g.reshape(1, -1), indices, out[i:i + 1])


def per_example_grad(mod: nn.Module, attr: str, x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """(B, *param shape) gradients of one call of `mod`: x its input, dy its output's gradient."""
    B = dy.shape[0]
    if isinstance(mod, nn.Embedding):
        if attr != "weight":
            raise ValueError("an embedding has only a weight")
        dy = dy.reshape(B, -1, dy.shape[-1])                                 # (B, T, H)
        ids = x.reshape(B, -1)                                                # (B, T)
        g = torch.zeros((B,) + tuple(mod.weight.shape), dtype=dy.dtype, device=dy.device)
        rows = torch.arange(B, device=ids.device).unsqueeze(1).expand_as(ids)
        return g.index_put_((rows, ids), dy, accumulate=True)                 # (B, V, H)
    dy = dy.reshape(B, -1, dy.shape[-1])                                     # (B, T, out)
    if attr == "bias":
        return dy.sum(1)                                                      # (B, out)
    x = x.reshape(B, -1, x.shape[-1])                                        # (B, T, in)
    if isinstance(mod, nn.LayerNorm):
        mu = x.mean(-1, keepdim=True)
        xhat = (x - mu) * torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + mod.eps)
        return (dy * xhat).sum(1)                                             # (B, H)
    if isinstance(mod, nn.Linear):
        return torch.bmm(dy.transpose(1, 2), x)                               # (B, out, in)
    return torch.bmm(x.transpose(1, 2), dy)                                   # Conv1D: (B, in, out)


def select_into(flat: torch.Tensor, indices: torch.Tensor | None, out: torch.Tensor) -> None:
    """out (B, n) = flat (B, numel) at the selected entries (None: all), converted to out's dtype;
    one contiguous gather per example (a gather along dim 1 of the whole batch is several times slower)."""
    if indices is None:
        out.copy_(flat)
        return
    idx = indices.to(flat.device)
    for i in range(flat.shape[0]):  # out[i] is a contiguous run of row i
        if flat.dtype == out.dtype:
            torch.index_select(flat[i], 0, idx, out=out[i])
        else:
            out[i].copy_(flat[i].index_select(0, idx))
