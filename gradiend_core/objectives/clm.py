"""clm: decoder-only causal language models; the target word is predicted after the prefix.

Inputs of a masked row (extraction and decoder grid alike): the text before the first [MASK], encoded
with the tokenizer's own special tokens (Llama/OPT: BOS first; GPT-2: none) and cut from the left to
max_length (leading special tokens kept); the logits at its last position score the first subtoken of
the target. LMS: the average next-token negative log-likelihood over real tokens; LMS = 1 / (1 + avgNLL)
(`decoder_grid.lms: log_prob`: exp(-avgNLL) = 1 / perplexity), from per-token log-probabilities.

Deviation from the reference: targets are encoded with a leading space (" he") when the tokenizer is
byte-level BPE (GPT-2 style); the reference encodes "he" without the space, i.e. the word-initial form
the model almost never sees after a prefix.
Deviation from the reference: targets are scored from the logits at the LAST prefix position (the
reference labels the last prefix token and lets HF shift the labels, scoring the target one position
early, from the second-to-last prefix token).
Deviation from the reference: a row with nothing before [MASK] is scored after the BOS token (EOS when
there is none); extraction then uses the sentence-initial (no leading space) target form, instead of
an empty input.
Deviation from the reference: the LMS scores the logits at position t against the token at t+1 (the
reference compares position t to token t, without the next-token shift).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from gradiend_core.errors import DataError
from gradiend_core.objectives import register
from gradiend_core.objectives.base import Objective, PreparedLMS, Row, is_byte_level, lms_batches, pad_id, word_ids
from gradiend_core.tokens import MASK, split_at_mask

# Model types that are decoder-only even though some of them also register a masked-LM class.
_CLM_MODEL_TYPES = {
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3",
    "phi", "phi3", "gemma", "gemma2", "falcon", "opt", "bloom", "olmo", "olmo2", "codegen",
}
_HEAD_CLASSES = ("ForCausalLM", "LMHeadModel")
_LOGIT_SCALING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


@register
class CausalLM(Objective):
    name = "clm"
    head_kind = "causal-LM"
    pipeline_task = "text-generation"
    missing_head_fix = "use a checkpoint that includes its lm_head"

    # -- recognising and loading
    def auto_score(self, config) -> int:
        """3: decoder-only for sure (beats mlm's 2); 1: a causal-LM class exists (loses to mlm)."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        model_type = getattr(config, "model_type", "")
        archs = list(getattr(config, "architectures", None) or [])
        if getattr(config, "is_decoder", False) or model_type in _CLM_MODEL_TYPES:
            return 3
        if any(a.endswith(_HEAD_CLASSES) for a in archs):
            return 3
        if getattr(config, "is_encoder_decoder", False):
            return 0
        return 1 if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else 0

    def auto_model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    # -- text and target words
    def target_token_ids(self, tokenizer, word: str) -> list[int]:
        text = word.strip()
        if text and is_byte_level(tokenizer):
            text = " " + text
        return word_ids(tokenizer, text, word)

    def scored_pieces(self, ids: list[int]) -> list[int]:
        return ids[:1]  # next-token scoring sees only the first piece (reference behaviour)

    def prefix_ids(self, tokenizer, masked: str, max_length: int) -> list[int]:
        """Ids of the text before the first [MASK] (the one encoding of `tokenize`), cut from the left to
        max_length; an empty prefix is the BOS token (EOS when there is none)."""
        prefix = split_at_mask(masked)[0].rstrip()
        ids: list[int] = []
        if prefix:
            enc = self.tokenize(tokenizer, [prefix])
            ids = _keep_end(list(enc["input_ids"][0]), list(enc["special_tokens_mask"][0]), max_length)
        if not ids:
            start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            if start is None:
                raise DataError(f"masked text {masked[:60]!r} has no words before {MASK} and the tokenizer has no "
                                "BOS token; a causal LM needs a prefix to predict from (drop such rows)")
            ids = [int(start)]
        return ids

    def training_inputs(self, tokenizer, masked: str, target: str, max_length: int) -> Row:
        """(prefix ids, [last prefix position], [first subtoken of the target])."""
        ids = self.prefix_ids(tokenizer, masked, max_length)
        if split_at_mask(masked)[0].rstrip():
            first = self.target_token_ids(tokenizer, target)[0]
        else:  # sentence-initial form: no leading space
            first = word_ids(tokenizer, target.strip(), target)[0]
        return ids, [len(ids) - 1], [first]

    def scoring_inputs(self, tokenizer, masked: str, k: int, max_length: int) -> tuple[list[int], list[int]]:
        ids = self.prefix_ids(tokenizer, masked, max_length)
        return ids, [len(ids) - 1]

    # -- the LM head
    def head_fn(self, model):
        if not type(model).__name__.endswith(_HEAD_CLASSES):
            return None
        if not isinstance(getattr(model, "lm_head", None), nn.Module):
            return None
        if any(getattr(model.config, k, None) not in (None, 1, 1.0) for k in _LOGIT_SCALING):
            return None  # logits are rescaled after lm_head: use the model's own forward
        return model.lm_head

    def forward_kwargs(self) -> dict:
        return {"use_cache": False}

    # -- LMS: shifted next-token NLL
    def prepare_lms(self, tokenizer, texts: list[str], *, mask_ratio: float, seed: int, batch_size: int,
                    ignore_ids: tuple[int, ...], max_length: int) -> PreparedLMS:
        ignore = set(ignore_ids)
        rows = []
        for ids in self.tokenize(tokenizer, texts, max_length)["input_ids"]:
            if len(ids) < 2:  # nothing to predict after the shift
                continue
            rows.append((ids, [-100 if t in ignore else t for t in ids]))
        if not rows:
            raise DataError("every neutral text has fewer than 2 tokens; a causal LMS needs longer sentences")
        batches = lms_batches(rows, pad_id(tokenizer), batch_size)
        n = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        return PreparedLMS(self, batches, len(texts), n)

    @torch.no_grad()
    def lms_values(self, model, prepared: PreparedLMS, kind: str = "accuracy") -> torch.Tensor:
        """Per predicted token (row-major, after the shift): its log-probability, for either kind; the
        kinds differ only in `lms_from_mean`."""
        dev, out = next(model.parameters()).device, []
        for b in prepared.batches:
            logits = model(input_ids=b["input_ids"].to(dev), attention_mask=b["attention_mask"].to(dev)).logits
            logp = logits[:, :-1].float().log_softmax(-1)  # (B, T-1, V): position t predicts token t+1
            target = b["labels"][:, 1:].to(dev)            # (B, T-1)
            sel = target != -100
            out.append(logp[sel].gather(1, target[sel][:, None])[:, 0].double().cpu())
        values = torch.cat(out)
        if values.numel() == 0:
            raise DataError("no token left to score after ignoring ids; pass longer texts or fewer ignore_ids")
        return values

    def lms_from_mean(self, mean, kind: str = "accuracy"):
        """accuracy: the reference's 1 / (1 + average NLL) (0 when the NLL is not finite or above 700);
        log_prob: exp(mean log-probability) = 1 / perplexity."""
        if kind == "log_prob":
            return np.exp(mean)
        avg = -np.asarray(mean, dtype=float)
        ok = np.isfinite(avg) & (avg >= 0.0) & (avg <= 700.0)  # exp overflows past ~709
        out = np.where(ok, 1.0 / (1.0 + np.where(ok, avg, 0.0)), 0.0)
        return float(out) if out.ndim == 0 else out

    def lms_summary(self, values: torch.Tensor, kind: str = "accuracy") -> dict:
        avg = -float(values.mean())
        ok = math.isfinite(avg) and 0.0 <= avg <= 700.0
        return {"lms": float(self.lms_from_mean(-avg, kind)), "avg_nll": avg,
                "perplexity": math.exp(avg) if ok else float("inf"), "n": int(values.numel())}

def _keep_end(ids: list[int], special: list[int], max_length: int) -> list[int]:
    """The last max_length ids, keeping the leading special tokens (a BOS) in front."""
    if len(ids) <= max_length:
        return ids
    lead = 0
    while lead < len(special) and special[lead]:
        lead += 1
    keep = max_length - lead
    return ids[:lead] + ids[len(ids) - keep:] if 0 < lead < max_length else ids[-max_length:]
