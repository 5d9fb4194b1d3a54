"""mlm: encoder (BERT-like) masked language models; the target word is predicted at mask tokens.

Training inputs: every [MASK] placeholder becomes n mask tokens for an n-subtoken target and the i-th
mask is labelled with the i-th subtoken. Scoring inputs (decoder grid): the first [MASK] becomes k mask
tokens for a k-piece candidate, later ones stay single mask tokens. LMS: top-1 accuracy of recovering
~15% masked real tokens of neutral sentences (`decoder_grid.lms: log_prob`: exp of their mean
log-probability), scored per position so that two models can be compared position by position.

Deviation from the reference: a template with several [MASK] placeholders expands every one of them to n
masks (the reference labels the i-th mask overall with subtoken min(i, n-1)).
Deviation from the reference: the LMS never masks special tokens ([CLS]/[SEP]/...): the reference's
special-token filter compares a tensor to a list and is always true, so it can mask and score them.
Deviation from the reference: LMS correctness compares token ids (argmax id == original id), not
lower-cased decoded strings; ignored ids are excluded before positions are drawn (the reference draws
first and skips ignored positions afterwards, so fewer positions get scored).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gradiend_core.errors import ConfigError, DataError
from gradiend_core.objectives import register
from gradiend_core.objectives.base import (Objective, PreparedLMS, Row, lms_batches, mask_token_or_error, pad_id,
                                           word_ids)
from gradiend_core.tokens import MASK, split_at_mask

_HEAD_ATTRS = ("cls", "lm_head")


@register
class MaskedLM(Objective):
    name = "mlm"
    head_kind = "masked-LM"
    pipeline_task = "fill-mask"
    fits_head = True
    missing_head_fix = "enable head fitting (model.fit_head) or use a model with an MLM head"

    # -- recognising and loading
    def auto_score(self, config) -> int:
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        if getattr(config, "is_encoder_decoder", False):
            return 0
        return 2 if getattr(config, "model_type", "") in MODEL_FOR_MASKED_LM_MAPPING_NAMES else 0

    def auto_model_class(self):
        from transformers import AutoModelForMaskedLM

        return AutoModelForMaskedLM

    def check_tokenizer(self, tokenizer, name: str | None = None) -> None:
        mask_token_or_error(tokenizer, name)

    @torch.no_grad()
    def init_head(self, model, seed: int) -> None:
        """Deterministic BERT-style init: Linear ~ N(0, initializer_range), LayerNorm 1/0, biases 0."""
        g = torch.Generator().manual_seed(seed)
        std = float(getattr(model.config, "initializer_range", 0.02))
        for name, p in self.head_parameters(model):
            if name.endswith("weight") and p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * std)
            elif name.endswith("weight"):  # LayerNorm scale
                p.fill_(1.0)
            else:
                p.zero_()

    def fit_head(self, model, tokenizer, texts: Sequence[str], cfg=None, reset: bool = False,
                 name: str | None = None, classes: dict | None = None) -> dict:
        from gradiend_core.head import fit_mlm_head

        return fit_mlm_head(model, tokenizer, texts, cfg, objective=self, reset=reset)

    # -- text and target words
    def target_token_ids(self, tokenizer, word: str) -> list[int]:
        return word_ids(tokenizer, word.strip(), word)

    def mask_tokens(self, tokenizer, k: int) -> list[str]:
        """The k mask tokens that stand for a k-piece target (the i-th is labelled with the i-th piece)."""
        mask_token_or_error(tokenizer)
        return [tokenizer.mask_token] * k

    def training_inputs(self, tokenizer, masked: str, target: str, max_length: int) -> Row:
        split_at_mask(masked)  # DataError without a placeholder
        self.check_tokenizer(tokenizer)
        sub = self.target_token_ids(tokenizer, target)
        marks = self.mask_tokens(tokenizer, len(sub))
        mask_ids = set(tokenizer.convert_tokens_to_ids(marks))
        parts = masked.split(MASK)
        text = " ".join(marks).join(parts)
        ids = list(self.tokenize(tokenizer, [text], max_length)["input_ids"][0])
        cols = [i for i, t in enumerate(ids) if t in mask_ids]
        expected = (len(parts) - 1) * len(sub)
        if len(cols) != expected:
            raise DataError(f"masked text {masked!r} has {len(cols)} mask tokens after tokenization, expected "
                            f"{expected}; shorten the text (max {max_length} tokens) or remove literal mask tokens")
        return ids, cols, [sub[j % len(sub)] for j in range(len(cols))]

    def scoring_inputs(self, tokenizer, masked: str, k: int, max_length: int) -> tuple[list[int], list[int]]:
        """The first [MASK] becomes k mask tokens; later [MASK]s stay single mask tokens (not scored)."""
        marks = self.mask_tokens(tokenizer, k)
        mask_ids = set(tokenizer.convert_tokens_to_ids(marks))
        pre, post = split_at_mask(masked)
        text = pre + " ".join(marks) + post.replace(MASK, marks[0])
        ids = self.tokenize(tokenizer, [text], max_length)["input_ids"][0]
        pos = [i for i, t in enumerate(ids) if t in mask_ids][:k]
        if len(pos) < k:
            raise DataError(f"the mask of row {masked[:60]!r} lies beyond max_length={max_length}; shorten the row")
        return ids, pos

    # -- the LM head
    def head_fn(self, model):
        cls = type(model).__name__
        if not cls.endswith("ForMaskedLM"):
            return None
        if cls.startswith("DistilBert"):
            return lambda h: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
        for attr in _HEAD_ATTRS:
            if isinstance(getattr(model, attr, None), nn.Module):
                return getattr(model, attr)
        return None

    # -- LMS: top-1 accuracy at masked real tokens
    def prepare_lms(self, tokenizer, texts: list[str], *, mask_ratio: float, seed: int, batch_size: int,
                    ignore_ids: tuple[int, ...], max_length: int) -> PreparedLMS:
        self.check_tokenizer(tokenizer)
        if not 0.0 < mask_ratio <= 1.0:
            raise ConfigError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
        enc = self.tokenize(tokenizer, texts, max_length)
        all_special = set(tokenizer.all_special_ids)
        gen = torch.Generator().manual_seed(int(seed))  # one generator, sentences in order: reproducible
        rows = []
        for ids, smask in zip(enc["input_ids"], enc["special_tokens_mask"]):
            special = [bool(s) or t in all_special for t, s in zip(ids, smask)]
            out = _mask_one(ids, special, set(ignore_ids), tokenizer.mask_token_id, mask_ratio, gen)
            if out is not None:
                rows.append(out)
        if not rows:
            raise DataError("no neutral text has a maskable (non-special, non-ignored) token; pass real sentences")
        batches = lms_batches(rows, pad_id(tokenizer), batch_size)
        n = sum(int((b["labels"] != -100).sum()) for b in batches)
        return PreparedLMS(self, batches, len(texts), n)

    @torch.no_grad()
    def lms_values(self, model, prepared: PreparedLMS, kind: str = "accuracy") -> torch.Tensor:
        """Per masked position: 1.0 if the top-1 prediction is the original token, else 0.0 (accuracy), or
        the log-probability of the original token (log_prob)."""
        dev, out = next(model.parameters()).device, []
        for b in prepared.batches:
            sel = b["labels"].to(dev) != -100        # (B, T)
            rows, cols = sel.nonzero(as_tuple=True)  # (M,) each, row-major: the order of labels[sel]
            logits = self.logits_at(model, b["input_ids"].to(dev), b["attention_mask"].to(dev), rows, cols)
            labels = b["labels"].to(dev)[sel]        # (M,)
            if kind == "log_prob":
                out.append(logits.float().log_softmax(-1).gather(1, labels[:, None])[:, 0].double().cpu())
            else:
                out.append((logits.argmax(-1) == labels).double().cpu())  # (M,) one prediction per position
        return torch.cat(out)

def _mask_one(ids: list[int], special: list[bool], ignore: set[int], mask_id: int, mask_ratio: float,
              gen: torch.Generator) -> tuple[list[int], list[int]] | None:
    """Mask max(1, int(ratio*n)) of the n eligible (non-special, non-ignored) positions of one sentence."""
    eligible = [i for i, (t, s) in enumerate(zip(ids, special)) if not s and t not in ignore]
    if not eligible:
        return None
    k = max(1, int(mask_ratio * len(eligible)))
    chosen = torch.randperm(len(eligible), generator=gen)[:k].tolist()
    masked, labels = list(ids), [-100] * len(ids)
    for j in chosen:
        pos = eligible[j]
        labels[pos] = ids[pos]
        masked[pos] = mask_id
    return masked, labels
