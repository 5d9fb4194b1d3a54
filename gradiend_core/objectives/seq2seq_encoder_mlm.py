"""seq2seq_encoder_mlm: encoder-decoder models (T5, BART) used as masked LMs through their encoder.

The backbone is the encoder with the shared embeddings; the LM head (tied to the shared embeddings) is
applied to the ENCODER's hidden states, so the model predicts the masked word BERT-style and the decoder
takes no part in the GRADIEND's gradients or class probabilities (the reference's seq2seq backbone).
The mask is the tokenizer's mask token where it has one (BART `<mask>`), else T5's sentinels: a
k-piece target is `<extra_id_0> ... <extra_id_{k-1}>` (BART: k `<mask>` tokens), the i-th labelled with
the i-th piece. Training inputs and scoring inputs are those of `mlm` with these mask tokens: the encoder
sees the masked sentence, nothing is fed to the decoder, and the class probabilities are the softmax at
the sentinel / mask (data-and-evaluation §3.3). Targets are encoded with a leading space where the
tokenizer is byte-level BPE (BART), as the word after a space inside a sentence.

LMS (the reference's seq2seq LMS): the whole model, teacher-forced to reproduce its input (labels = the
input ids, the tokenizer's special tokens included, ignored ids excluded from the score); per position
the log-probability of the label; LMS = 1 / (1 + average NLL) (`decoder_grid.lms: log_prob`:
exp(-average NLL)), as for `clm`. The decoder thus measures what a rewrite of the shared encoder and
embeddings does to the model as a whole.

The rewritten model is the whole seq2seq model (encoder and shared embeddings rewritten, decoder as is):
a BART loads with `transformers.pipeline("fill-mask")` (BartForConditionalGeneration), a T5 with
`pipeline("text-generation")` (transformers 5 has no text2text pipeline; it loads
T5ForConditionalGeneration and generates from the encoder input).

Deviation from the reference: T5's sentinels for a multi-piece target are <extra_id_0..k-1> at every
[MASK] placeholder of the row (the reference keeps later placeholders as literal text).
"""
from __future__ import annotations

import torch

from gradiend_core.errors import DataError, ModelError
from gradiend_core.objectives import register
from gradiend_core.objectives.base import Encoded, PreparedLMS, is_byte_level, lms_batches, model_name, pad_id, word_ids
from gradiend_core.objectives.clm import CausalLM
from gradiend_core.objectives.mlm import MaskedLM

SENTINEL = "<extra_id_{}>"


@register
class Seq2SeqEncoderMLM(MaskedLM):
    name = "seq2seq_encoder_mlm"
    head_kind = "encoder-decoder (seq2seq) LM"
    pipeline_task = "text-generation"
    fits_head = False
    missing_head_fix = "use a T5/BART checkpoint that includes its LM head"

    # -- recognising and loading
    def auto_score(self, config) -> int:
        """2 for an encoder-decoder model with a seq2seq LM class (T5, BART, mT5, ...); mlm and clm say 0."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

        if not getattr(config, "is_encoder_decoder", False):
            return 0
        return 2 if getattr(config, "model_type", "") in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES else 0

    def auto_model_class(self):
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM

    def pipeline_task_for(self, config) -> str:
        """fill-mask where the architecture is also a masked LM for transformers (BART, mBART), else
        text-generation (T5: loads T5ForConditionalGeneration and generates)."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        return "fill-mask" if getattr(config, "model_type", "") in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "text-generation"

    def missing_head(self, model, missing_keys: set[str], name: str, allow: bool) -> bool | None:
        if any(k.startswith("lm_head") for k in missing_keys) and not model.config.tie_word_embeddings:
            raise ModelError(f"'{name}' has no {self.head_kind} head; {self.missing_head_fix}")
        return None

    def check_tokenizer(self, tokenizer, name: str | None = None) -> None:
        self.mask_tokens(tokenizer, 1, name)

    def mask_tokens(self, tokenizer, k: int, name: str | None = None) -> list[str]:
        """k mask tokens (BART) or the sentinels <extra_id_0..k-1> (T5); ModelError if there are neither."""
        if getattr(tokenizer, "mask_token_id", None) is not None:
            return [tokenizer.mask_token] * k
        marks = [SENTINEL.format(i) for i in range(k)]
        unk = getattr(tokenizer, "unk_token_id", None)
        ids = tokenizer.convert_tokens_to_ids(marks)
        if any(i is None or i == unk for i in ids):
            raise ModelError(f"the tokenizer of {name or model_name(tokenizer)} has neither a mask token nor the "
                             f"sentinels {marks[0]}..{marks[-1]}; a seq2seq encoder MLM needs one of them (use the "
                             "model's own tokenizer)")
        return marks

    def target_token_ids(self, tokenizer, word: str) -> list[int]:
        text = word.strip()
        if text and is_byte_level(tokenizer):
            text = " " + text  # BART: the in-sentence form after a space (its <mask> absorbs the space)
        return word_ids(tokenizer, text, word)

    # -- the encoder as backbone, the LM head on its hidden states
    def backbone(self, model):
        return model.get_encoder()

    def head_fn(self, model):
        return model.lm_head  # reference: lm_head on the encoder states (no T5 rescaling, no final_logits_bias)

    def label_logits(self, model, enc: Encoded, fast: bool = True) -> torch.Tensor:
        """Logits (N, V) of the LM head at the labelled encoder positions (the decoder never runs)."""
        hidden = self.backbone(model)(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
        return self.head_fn(model)(hidden[enc.rows, enc.cols])  # (N, H) -> (N, V)

    def init_head(self, model, seed: int) -> None:
        raise ModelError(f"objective '{self.name}' cannot initialise a head; {self.missing_head_fix}")

    # -- LMS: teacher-forced reconstruction of the input
    def prepare_lms(self, tokenizer, texts: list[str], *, mask_ratio: float, seed: int, batch_size: int,
                    ignore_ids: tuple[int, ...], max_length: int) -> PreparedLMS:
        ignore = set(ignore_ids)
        rows = [(ids, [-100 if t in ignore else t for t in ids])
                for ids in self.tokenize(tokenizer, texts, max_length)["input_ids"] if ids]
        batches = lms_batches(rows, pad_id(tokenizer), batch_size) if rows else []
        n = sum(int((b["labels"] != -100).sum()) for b in batches)
        if n == 0:
            raise DataError("no neutral token is left to score after ignoring ids; pass real sentences")
        return PreparedLMS(self, batches, len(texts), n)

    @torch.no_grad()
    def lms_values(self, model, prepared: PreparedLMS, kind: str = "accuracy") -> torch.Tensor:
        """Per labelled position (row-major): log p(label) with the decoder fed the shifted input ids."""
        dev, out = next(model.parameters()).device, []
        for b in prepared.batches:
            ids, att = b["input_ids"].to(dev), b["attention_mask"].to(dev)
            decoder_ids = model.prepare_decoder_input_ids_from_labels(labels=ids)  # (B, T) start token + ids[:-1]
            logits = model(input_ids=ids, attention_mask=att, decoder_input_ids=decoder_ids, use_cache=False).logits
            labels = b["labels"].to(dev)
            sel = labels != -100
            out.append(logits.float().log_softmax(-1)[sel].gather(1, labels[sel][:, None])[:, 0].double().cpu())
        return torch.cat(out)

    lms_from_mean = CausalLM.lms_from_mean
    lms_summary = CausalLM.lms_summary
