"""Base-model gradients of target-token predictions: the GRADIEND inputs.

A row is a masked sentence with a literal "[MASK]" placeholder and a target word. What the model is fed
and which positions are labelled with which token ids is the base model's prediction objective
(`Objective.training_inputs`, gradiend_core/objectives/: MLM labels the mask tokens, CLM the last prefix
position). The loss is cross-entropy; gradients are taken w.r.t. the parameters of a ParamMap and
returned as flat float32 CPU vectors (P,), in map order.

Deviation from the reference: batches are padded to their longest row (the reference pads every text to
256 tokens), and LM-head logits are computed only at labelled positions (same gradients, far less work).

Per-example gradients: `torch.func` vmap(grad) does not run on transformers 5.x models (their attention
mask code branches on tensor values), so three strategies exist: "hooks" (one padded forward and one
backward per label set; each layer's per-example weight gradient is formed from its hooked input and
output gradient, see per_example.py; the default wherever every selected tensor belongs to a Linear,
Conv1D, LayerNorm or Embedding), "loop" (one unpadded forward+backward per row; the fallback) and
"batched" (one padded forward, then a vmapped backward via autograd's is_grads_batched).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gradiend_core.allocator import reuse_freed_memory
from gradiend_core.embedding_grad import EmbeddingGrad
from gradiend_core.errors import ConfigError, DataError, ModelError
from gradiend_core.lm import BaseLM
from gradiend_core.objectives.base import Encoded, collate
from gradiend_core.per_example import LayerHooks, NotHookable, select_into

KINDS = ("factual", "alternative", "diff")
PerExample = Literal["auto", "hooks", "loop", "batched"]


@dataclass
class MaskedBatch:
    """Rows of masked sentences (literal "[MASK]") and the word that fills each."""
    masked: list[str]
    targets: list[str]


# ----------------------------------------------------------------------------- encoding

def _check_rows(masked: Sequence[str], targets: Sequence[str]) -> None:
    if isinstance(masked, str) or isinstance(targets, str):
        raise DataError("masked texts and targets must be lists of strings, not one string; wrap them in [...]")
    if len(masked) != len(targets):
        raise DataError(f"{len(masked)} masked texts but {len(targets)} targets; pass one target per text")
    if not masked:
        raise DataError("no rows to compute gradients for; pass at least one masked text")


# ----------------------------------------------------------------------------- extractor

class GradientExtractor:
    """Gradients of target-token cross-entropy w.r.t. the parameters selected by a ParamMap.

    Only the selected parameters get requires_grad=True (tied aliases follow their tensor); the model
    stays in eval mode, so there is no dropout and gradients are deterministic.

    `label_threads`: with the "hooks" strategy, a pair's alternative-label backward pass and products
    run on a helper thread while the factual ones run here (bit-identical rows; the extraction of the
    bench config went from 57 to 47 ms/row on 2 cores).
    """

    def __init__(self, base: BaseLM, param_map, per_example: PerExample = "auto",
                 max_length: int | None = None, fast_head: bool = True, label_threads: bool = True):
        if per_example not in ("auto", "hooks", "loop", "batched"):
            raise ConfigError(f"unknown per-example strategy {per_example!r}; use 'auto', 'hooks', 'loop' or 'batched'")
        if base.head_fitted is False:
            raise ModelError(f"the masked-LM head of '{base.name_or_path}' is newly initialised and not fitted, so its "
                             "gradients are meaningless; fit it first (BaseLM.fit_head / model.fit_head)")
        self.base, self.param_map = base, param_map
        self.model, self.tokenizer, self.objective = base.model, base.tokenizer, base.objective
        self.per_example, self.fast_head = per_example, fast_head
        self.max_length = int(max_length or base.max_input_length())
        param_map.check_model(self.model)  # ModelError on a missing name or a shape mismatch
        named = dict(self.model.named_parameters(remove_duplicate=False))
        self.names: list[str] = [spec.name for spec in param_map.specs]  # map order = output layout
        self.params: list[nn.Parameter] = [named[n] for n in self.names]
        selected = {id(p) for p in self.params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in selected)
        self.model.eval()
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.device = self.params[0].device if self.params else torch.device("cpu")
        # the word-embedding matrix's gradient is formed at the selected entries only (embedding_grad.py)
        self._emb, self._emb_pos = None, None
        body = self.objective.backbone(self.model)
        for i, (spec, p) in enumerate(zip(param_map.specs, self.params)):
            eg = EmbeddingGrad.for_model(self.model, p, spec.indices, body) if per_example != "batched" else None
            if eg is not None:
                self._emb, self._emb_pos = eg, i
        self._autograd_params = [p for i, p in enumerate(self.params) if i != self._emb_pos]
        self._emb_off = sum(s.n_selected for s in param_map.specs[:self._emb_pos or 0])  # its slice of a row
        self._hooks = None
        self._pool = None
        self.label_threads = label_threads
        if per_example in ("auto", "hooks"):
            self._hooks = LayerHooks.for_model(self.model, self.names, skip=self._emb_pos)
            if self._hooks is None and per_example == "hooks":
                raise ConfigError("per_example='hooks' needs every selected tensor to be the weight or bias of a "
                                  "Linear, Conv1D, LayerNorm or Embedding; use 'loop' for this model/selection")
            self.per_example = "hooks" if self._hooks is not None else "loop"
        reuse_freed_memory()  # per-row gradients reuse heap blocks instead of page-faulting fresh ones

    # -- encoding / loss
    def encode_row(self, masked: str, target: str):
        """(ids, label positions, label ids) of one row: the objective's training inputs."""
        return self.objective.training_inputs(self.tokenizer, masked, target, self.max_length)

    def encode(self, masked: Sequence[str], targets: Sequence[str]) -> Encoded:
        _check_rows(masked, targets)
        enc = collate([self.encode_row(m, t) for m, t in zip(masked, targets)], self.pad_id)
        return Encoded(*(t.to(self.device) for t in (enc.input_ids, enc.attention_mask, enc.rows,
                                                      enc.cols, enc.labels)))

    def label_losses(self, enc: Encoded) -> torch.Tensor:
        """Cross-entropy (N,) of every labelled position."""
        logits = self.objective.label_logits(self.model, enc, self.fast_head)  # (N, V)
        if logits.dtype not in (torch.float32, torch.float64):
            logits = logits.float()  # half-precision cross-entropy loses the small gradients
        return F.cross_entropy(logits, enc.labels, reduction="none")

    def _flat(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """(P,) float32 CPU vector of the selected entries of per-parameter gradients."""
        row = torch.empty(self.param_map.input_dim, dtype=torch.float32, device=self.device)
        self._write_row(row, grads)
        return row.cpu()

    def _rows(self, B: int) -> torch.Tensor:
        """(B, P) float32 rows on the model's device: gathered there, moved to the CPU once (`.cpu()`, a
        no-op on the CPU) by the public methods."""
        return torch.empty((B, self.param_map.input_dim), dtype=torch.float32, device=self.device)

    def _write_row(self, row: torch.Tensor, grads: Sequence, skip: int | None = None) -> None:
        """Copy the selected entries (map order) straight into `row` (P,): no (P,) temporary, which
        matters at P ~ 1e7-1e8 where allocating and concatenating costs as much as the backward.
        The spec at index `skip` (if given) is already written."""
        off = 0
        for i, (spec, g) in enumerate(zip(self.param_map.specs, grads)):
            n = spec.n_selected
            if i != skip:  # gathers straight into the row: no temporary
                select_into(g.detach().reshape(1, -1), spec.indices, row[off:off + n].reshape(1, -1))
            off += n

    def _grads(self, loss: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(loss, self.params, allow_unused=True, materialize_grads=True)

    def _forward(self):
        """Context for a per-example forward: hooks the word embedding when its gradient is formed
        sparsely (see _row_into)."""
        return self._emb.hooked() if self._emb is not None else contextlib.nullcontext()

    def _row_into(self, row: torch.Tensor, loss: torch.Tensor, retain: bool = False) -> None:
        """Gradient of `loss` at the selected entries, written into row (P,). The forward must have
        run inside _forward()."""
        if self._emb is None:
            grads = torch.autograd.grad(loss, self.params, retain_graph=retain, allow_unused=True,
                                        materialize_grads=True)
            self._write_row(row, grads)
            return
        inputs = self._autograd_params + self._emb.grad_inputs()
        gs = torch.autograd.grad(loss, inputs, retain_graph=retain, allow_unused=True, materialize_grads=True)
        n = len(self._autograd_params)
        width = self.param_map.specs[self._emb_pos].n_selected
        self._emb.selected(list(gs[n:]), out=row[self._emb_off:self._emb_off + width])
        grads = list(gs[:n])
        grads.insert(self._emb_pos, None)
        self._write_row(row, grads, skip=self._emb_pos)

    # -- public API
    def batch_gradient(self, masked: Sequence[str], targets: Sequence[str]) -> torch.Tensor:
        """Gradient (P,) of the mean cross-entropy over all labelled positions of the batch."""
        try:
            return self._flat(self._grads(self.label_losses(self.encode(masked, targets)).mean()))
        finally:
            self._clear()

    def mean_example_gradient(self, masked: Sequence[str], targets: Sequence[str]) -> torch.Tensor:
        """Mean (P,) of the rows' per-example gradients (`example_gradients(...).mean(0)`), from one padded
        pass and one ordinary backward: gradients are linear in the loss, so the mean of the rows'
        gradients is the gradient of the mean of their losses (each row's mean label cross-entropy).
        No (B, P) rows are formed, which is what makes it cheap at full width (pre-pruning)."""
        try:
            enc = self.encode(masked, targets)
            ce = self.label_losses(enc)                                                  # (N,)
            B = enc.batch_size
            weight = (1.0 / torch.bincount(enc.rows, minlength=B).to(ce.dtype))[enc.rows] / B  # (N,)
            return self._flat(self._grads((ce * weight).sum()))
        finally:
            self._clear()

    def example_gradients(self, masked: Sequence[str], targets: Sequence[str]) -> torch.Tensor:
        """Per-example gradients (B, P); row i is the gradient of row i's mean label cross-entropy."""
        _check_rows(masked, targets)
        try:
            if self.per_example == "hooks":
                try:
                    return self._hooked(self.encode(masked, targets), [None])[0].cpu()
                except NotHookable:  # e.g. an in-place change of a layer's output: the per-row loop
                    self.per_example = "loop"
            if self.per_example == "batched":
                try:
                    return self._batched(masked, targets).cpu()
                except RuntimeError:  # a model whose backward cannot be vmapped: fall back to the loop
                    self.per_example = "loop"
            return self._loop(masked, targets).cpu()
        finally:
            self._clear()

    def pair_gradients(self, masked: Sequence[str], factual: Sequence[str],
                       alternative: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example gradients for the factual and the alternative word of each row: (B, P) each.

        When both words have the same number of subtokens the two inputs are identical, so one
        forward pass serves both backward passes (the graph is kept for the second).
        """
        _check_rows(masked, factual)
        _check_rows(masked, alternative)
        if self.per_example == "hooks":
            try:
                ef, ea = self.encode(masked, factual), self.encode(masked, alternative)
                if torch.equal(ef.input_ids, ea.input_ids) and torch.equal(ef.cols, ea.cols) \
                        and torch.equal(ef.rows, ea.rows):  # same inputs: one forward serves both labels
                    g_f, g_a = self._hooked(ef, [ef.labels, ea.labels])
                    return g_f.cpu(), g_a.cpu()
                return self._hooked(ef, [None])[0].cpu(), self._hooked(ea, [None])[0].cpu()
            except NotHookable:  # e.g. an in-place change of a layer's output: the per-row loop
                self.per_example = "loop"
            finally:
                self._clear()
        if self.per_example != "loop":
            return self.example_gradients(masked, factual), self.example_gradients(masked, alternative)
        g_f, g_a = self._rows(len(masked)), self._rows(len(masked))
        try:
            for i, (m, f, a) in enumerate(zip(masked, factual, alternative)):
                ef, ea = self.encode([m], [f]), self.encode([m], [a])
                if torch.equal(ef.input_ids, ea.input_ids) and torch.equal(ef.cols, ea.cols):
                    with self._forward():
                        logits = self.objective.label_logits(self.model, ef, self.fast_head).float()  # (n, V)
                    self._row_into(g_f[i], F.cross_entropy(logits, ef.labels), retain=True)
                    self._row_into(g_a[i], F.cross_entropy(logits, ea.labels))
                else:
                    for enc, out in ((ef, g_f[i]), (ea, g_a[i])):
                        with self._forward():
                            loss = self.label_losses(enc).mean()
                        self._row_into(out, loss)
        finally:
            self._clear()
        return g_f.cpu(), g_a.cpu()

    # -- strategies
    def _loop(self, masked, targets) -> torch.Tensor:
        out = self._rows(len(masked))
        for i, (m, t) in enumerate(zip(masked, targets)):
            enc = self.encode([m], [t])  # unpadded single row
            with self._forward():
                loss = self.label_losses(enc).mean()
            self._row_into(out[i], loss)
        return out

    def _batched(self, masked, targets) -> torch.Tensor:
        enc = self.encode(masked, targets)
        B = enc.batch_size
        ce = self.label_losses(enc)                                            # (N,)
        counts = torch.bincount(enc.rows, minlength=B).to(ce.dtype)            # (B,)
        per_row = torch.zeros(B, dtype=ce.dtype, device=ce.device).index_add(0, enc.rows, ce) / counts
        eye = torch.eye(B, dtype=ce.dtype, device=ce.device)
        grads = torch.autograd.grad(per_row, self.params, grad_outputs=eye, is_grads_batched=True,
                                    allow_unused=True, materialize_grads=True)  # each (B, *shape)
        out = self._rows(B)
        for i in range(B):
            self._write_row(out[i], [g[i] for g in grads])
        return out

    def _hooked(self, enc: Encoded, label_sets: list) -> list[torch.Tensor]:
        """Per-example gradients (B, P) for each label vector (N,) of `label_sets` (None: enc.labels),
        from ONE padded forward of `enc` and one backward per label vector (see per_example.py)."""
        B = enc.batch_size
        with self._hooks.capture(self.model, B), self._forward():
            logits = self.objective.label_logits(self.model, enc, self.fast_head)  # (N, V)
        if logits.dtype not in (torch.float32, torch.float64):
            logits = logits.float()  # half-precision cross-entropy loses the small gradients
        # a row's loss is the mean over its labels; rows are independent, so the sum's backward gives each
        # row its own gradient
        weight = (1.0 / torch.bincount(enc.rows, minlength=B).to(logits.dtype))[enc.rows]  # (N,)
        hooked = self._hooks.grad_inputs()
        extra = self._emb.grad_inputs() if self._emb is not None else []

        def rows(labels, retain: bool) -> torch.Tensor:
            labels = enc.labels if labels is None else labels
            loss = (F.cross_entropy(logits, labels, reduction="none") * weight).sum()
            gs = torch.autograd.grad(loss, hooked + extra, retain_graph=retain, allow_unused=True,
                                     materialize_grads=True)
            out = self._rows(B)  # (B, P)
            self._hooks.write(list(gs[:len(hooked)]), self.param_map.specs, out)
            if self._emb is not None:
                self._embedding_rows(enc, list(gs[len(hooked):]), out)
            return out

        if len(label_sets) == 2 and self.label_threads:
            # the two labels' backward passes and products share nothing but the forward graph: the
            # second runs on a helper thread (torch ops release the GIL), each with the same ops in
            # the same order as alone, so the rows are bit-identical
            from concurrent.futures import wait

            second = self._helper().submit(rows, label_sets[1], True)
            try:
                first = rows(label_sets[0], True)
            finally:
                wait([second])  # never leave the helper working on this batch when this one fails
            return [first, second.result()]
        return [rows(labels, k + 1 < len(label_sets)) for k, labels in enumerate(label_sets)]

    def _helper(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradiend-label")
        return self._pool

    def _embedding_rows(self, enc: Encoded, grads: list[torch.Tensor], out: torch.Tensor) -> None:
        """The input word embedding's selected entries for every example of a hooked batch."""
        cap = self._emb.captured()
        ids, d_emb = cap["ids"], grads[0]                  # (B, T), (B, T, H)
        h = cap.get("h")  # None unless the tied decoder ran (an auxiliary head does not run it)
        dlog = grads[1] if "logits" in cap else None
        width = self.param_map.specs[self._emb_pos].n_selected
        for i in range(enc.batch_size):
            if h is not None and h.dim() == 3:  # the full model's head ran: (B, T, H), (B, T, V)
                hi, di = h[i], dlog[i]
            elif h is not None:                 # the head ran at the labelled positions only: (N, H), (N, V)
                sel = enc.rows == i
                hi, di = h[sel], dlog[sel]
            else:
                hi = di = None
            self._emb.form(ids[i], d_emb[i], hi, di, out[i, self._emb_off:self._emb_off + width])

    def _clear(self) -> None:
        for p in self.params:
            p.grad = None


def assemble(kind: str, g_f: torch.Tensor | None, g_a: torch.Tensor | None) -> torch.Tensor:
    """The GRADIEND source/target tensor: g_f (factual), g_a (alternative) or g_f - g_a (diff)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown gradient kind {kind!r}; use one of {', '.join(KINDS)}")
    need = {"factual": (g_f,), "alternative": (g_a,), "diff": (g_f, g_a)}[kind]
    if any(g is None for g in need):
        raise ConfigError(f"gradient kind {kind!r} needs the "
                          f"{'factual and alternative' if kind == 'diff' else kind} gradients; compute them first")
    if kind == "factual":
        return g_f
    if kind == "alternative":
        return g_a
    return g_f - g_a
