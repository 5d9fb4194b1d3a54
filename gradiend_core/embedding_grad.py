"""The word-embedding gradient of one example, computed only at the selected entries.

With a tied LM head (BERT, GPT-2, ...) the word-embedding matrix W (V, H) gets two gradient terms:
  decoder:   dlogits^T @ h        (V, H), dense, rank = number of scored positions
  embedding: scatter of dE rows    (V, H), non-zero only at the example's token ids
Autograd materialises both as dense (V, H) tensors and adds them: on a MiniLM that is three passes
over 47 MB per backward, most of the extraction time once pre-pruning keeps ~10% of the entries.
Here W is taken out of autograd, the two factors (dlogits (N, V), h (N, H), dE (T, H)) are captured
with hooks, and only the selected entries are formed:
  g[v, c] = sum_n dlogits[n, v] * h[n, c] + sum_{t: id_t = v} dE[t, c]
Exact up to float summation order (tested against autograd).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class EmbeddingGrad:
    """Hooks and formulas for one model's input-embedding matrix (optionally tied to the LM decoder)."""
    embedding: nn.Embedding
    decoder: nn.Linear | None          # the LM head's output projection when it shares the weight
    indices: torch.Tensor | None       # selected flat entries of W (sorted), None = all
    _captured: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def for_model(model, weight: nn.Parameter, indices: torch.Tensor | None,
                  body: nn.Module | None = None) -> "EmbeddingGrad | None":
        """The helper when `weight` is the input-embedding matrix that `body` (the objective's backbone,
        default the model) looks tokens up in, else None. An embedding that rescales its output (BART's
        scaled word embedding) is left to autograd."""
        owner = body if body is not None and hasattr(body, "get_input_embeddings") else model
        emb = owner.get_input_embeddings() if hasattr(owner, "get_input_embeddings") else None
        if not isinstance(emb, nn.Embedding) or emb.weight is not weight:
            return None
        if float(getattr(emb, "embed_scale", 1.0)) != 1.0:
            return None
        out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        tied = isinstance(out, nn.Linear) and out.weight is weight
        return EmbeddingGrad(emb, out if tied else None, indices)

    @contextmanager
    def hooked(self):
        """During the forward: W needs no grad; capture the embedding output (as a grad leaf) and the
        decoder's input and output."""
        w = self.embedding.weight
        cap = self._captured
        cap.clear()

        def on_embedding(module, args, out):
            cap["ids"] = args[0]
            cap["emb"] = out.detach().requires_grad_(True)  # (B, T, H): its grad is dE
            return cap["emb"]

        def on_decoder(module, args, out):
            cap["h"], cap["logits"] = args[0], out  # (N, H), (N, V)

        handles = [self.embedding.register_forward_hook(on_embedding)]
        if self.decoder is not None:
            handles.append(self.decoder.register_forward_hook(on_decoder))
        was = w.requires_grad
        w.requires_grad_(False)
        try:
            yield self
        finally:
            w.requires_grad_(was)
            for h in handles:
                h.remove()

    def grad_inputs(self) -> list[torch.Tensor]:
        """Tensors whose gradients the formula needs (append to autograd.grad's inputs)."""
        cap = self._captured
        if "emb" not in cap:
            raise RuntimeError("the input embedding was not called in the forward pass; cannot form its gradient")
        return [cap["emb"]] + ([cap["logits"]] if "logits" in cap else [])  # the tied decoder ran

    def _rows_cols(self, H: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(vocabulary row, column) of every selected entry, computed once per extractor."""
        if "rc" not in self._cache:
            idx = self.indices.to(device)
            self._cache["rc"] = (idx // H, idx % H)
        return self._cache["rc"]

    def selected(self, grads: list[torch.Tensor], out: torch.Tensor) -> None:
        """Write the flat gradient at the selected entries into `out` (n_selected,), float32, from
        grad_inputs()' gradients (one example)."""
        cap = self._captured
        self.form(cap["ids"], grads[0], cap.get("h"), grads[1] if "logits" in cap else None, out)

    def captured(self) -> dict:
        """What the last hooked forward captured: ids (B, T), and with a tied decoder h (N, H)."""
        return self._captured

    def form(self, ids: torch.Tensor, d_emb: torch.Tensor, h: torch.Tensor | None, dlog: torch.Tensor | None,
             out: torch.Tensor) -> None:
        """One example's gradient at the selected entries, into out (n_selected,): ids (T,) its tokens,
        d_emb (T, H) the embedding output's gradient, h (N, H) / dlog (N, V) the decoder's input and
        output gradient at its scored positions (None without a tied decoder)."""
        w = self.embedding.weight
        V, H = w.shape
        ids = ids.reshape(-1)                                          # (T,)
        d_emb = d_emb.reshape(-1, H).float()                           # (T, H)
        uniq, inv = torch.unique(ids, return_inverse=True)             # (U,), (T,)
        d_rows = torch.zeros((len(uniq), H), dtype=torch.float32, device=d_emb.device).index_add_(0, inv, d_emb)
        tied = self.decoder is not None and dlog is not None
        if self.indices is None:
            g = out.view(V, H).zero_()
            g.index_add_(0, uniq, d_rows)
            if tied:
                g.addmm_(dlog.float().reshape(-1, V).t(), h.detach().float().reshape(-1, H))  # (V, N) @ (N, H)
            return
        v, c = self._rows_cols(H, d_emb.device)                        # (K,), (K,) of the selected entries
        out.zero_()
        if tied:
            dlog = dlog.float().reshape(-1, V)                         # (N, V) scored positions
            h = h.detach().float().reshape(-1, H)                      # (N, H)
            # usually one scored position per example; a full-sequence head also runs elsewhere (dlog 0)
            for n in torch.nonzero(dlog.abs().sum(1) > 0).reshape(-1).tolist():
                out.addcmul_(dlog[n, v], h[n, c])
        # the selected entries of vocabulary row u are one contiguous run of the sorted indices
        bounds = torch.searchsorted(self.indices, torch.stack([uniq * H, (uniq + 1) * H], 1).cpu()).tolist()
        for j, (lo, hi) in enumerate(bounds):  # one per distinct token of the text
            if hi > lo:
                out[lo:hi] += d_rows[j, c[lo:hi]]
