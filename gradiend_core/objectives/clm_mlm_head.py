"""clm_mlm_head: a decoder-only model probed by an auxiliary masked-word head (the reference's
decoder-only MLM head).

The masked position is shown to the causal model as one token in the full sentence: the tokenizer's
mask token where it has one, else its EOS token (GPT-2: "<|endoftext|>"), written directly after the
preceding word. The auxiliary head is a linear classifier over the class words (one output per distinct
target word of the data's classes, in class order); its input is the mean of the decoder's last hidden
states at the mask and the next POOLING - 1 tokens (the mask sees only the left context; the tokens after
it see the mask and the right context). The head is fitted in prepare-model with the decoder frozen
(`model.head` settings; the class words are part of prepare-model's key) on the base texts: every
occurrence of a class word (whole word, any case) becomes one masked row labelled with that word.

GRADIEND's gradients are of the head's cross-entropy w.r.t. the decoder's parameters (the backbone, as
for `clm`; the head is never selected). To reuse the token-level machinery, each class word is identified
with its first token as a causal LM predicts it (" he" for GPT-2): `label_logits` returns (N, V) logits
that hold the head's outputs at those token ids and -inf elsewhere, so the cross-entropy and the softmax
are exactly those over the head's classes. Class probabilities (decoder grid): the head's softmax at the
mask, summed per class. LMS: the decoder's own next-token score, as for `clm` (the rewrite changes the
decoder; the head only reads it).

The model in memory is the transformers causal LM with the head attached as submodule `mlm_aux_head` and
its description in the config (`gradiend_aux_mlm_head`: words, token ids, pooling, mask token). Saved
(prepare-model, rewrite), it is one directory: the decoder loads with `transformers.pipeline(
"text-generation")` (which ignores the head's tensors as unexpected keys); this objective's loader
re-attaches the head.

Deviation from the reference: no mask token is added to the vocabulary (the reference adds "[MASK]"
and resizes the embeddings); the EOS token stands for the mask, so the rewritten decoder keeps the
base's vocabulary and architecture.
Deviation from the reference: pooling covers real tokens only (the reference's padded batches pool
padding states when the mask is among the last POOLING - 1 tokens); head rows come from the base texts
in prepare-model (the reference fits on the GRADIEND training rows, 3-5 epochs of batch 4).
"""
from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from gradiend_core.errors import DataError, ModelError
from gradiend_core.objectives import register
from gradiend_core.objectives.base import Encoded, Row, collate, is_byte_level, model_name, pad_id
from gradiend_core.objectives.clm import CausalLM
from gradiend_core.tokens import MASK, split_at_mask

AUX = "mlm_aux_head"                 # the head's submodule name (its tensors: mlm_aux_head.weight / .bias)
CONFIG_KEY = "gradiend_aux_mlm_head"  # the head's description in the model config
POOLING = 3                          # hidden states averaged from the mask on (the reference's default)


@register
class CausalLMWithMLMHead(CausalLM):
    name = "clm_mlm_head"
    head_kind = "auxiliary masked-word"
    pipeline_task = "text-generation"
    fits_head = True
    head_needs_classes = True
    missing_head_fix = "enable head fitting (model.fit_head: auto) so that prepare-model fits it"

    # -- recognising and loading
    def auto_score(self, config) -> int:
        return 0  # only on request: `auto` picks clm for a decoder

    def cannot_serve(self, config) -> str | None:
        if super().auto_score(config) >= 3:
            return None
        return f"model type '{getattr(config, 'model_type', '?')}' (it is not a decoder-only causal LM)"

    def load_model(self, path: str):
        model, info = super().load_model(path)
        spec = getattr(model.config, CONFIG_KEY, None)
        if spec:
            attach_head(model, spec, _head_tensors(Path(path)))
            info["unexpected_keys"] = [k for k in info.get("unexpected_keys", ()) if not k.startswith(AUX + ".")]
        return model, info

    def missing_head(self, model, missing_keys: set[str], name: str, allow: bool) -> bool | None:
        super().missing_head(model, missing_keys, name, allow)  # the decoder's own LM head must be there
        if aux_head(model) is not None:
            return None
        if not allow:
            raise ModelError(f"'{name}' has no {self.head_kind} head; {self.missing_head_fix}")
        return False  # fitted (and created: its size is the number of class words) by fit_head

    def check_tokenizer(self, tokenizer, name: str | None = None) -> None:
        self.mask_token(tokenizer, name)

    def mask_token(self, tokenizer, name: str | None = None) -> str:
        token = getattr(tokenizer, "mask_token", None) or getattr(tokenizer, "eos_token", None)
        if token is None:
            raise ModelError(f"the tokenizer of {name or model_name(tokenizer)} has neither a mask nor an EOS token; "
                             "the auxiliary head needs one to mark the masked word")
        return token

    # -- text
    def masked_ids(self, tokenizer, masked: str, max_length: int) -> tuple[list[int], int]:
        """(ids of the sentence with the mask token at the first [MASK] (later ones too, unlabelled), the
        first mask's position)."""
        pre, post = split_at_mask(masked)
        mask = self.mask_token(tokenizer)
        glue = "" if is_byte_level(tokenizer) or not pre.strip() else " "
        text = pre.rstrip() + glue + mask + post.replace(MASK, mask)
        enc = self.tokenize(tokenizer, [text], max_length)
        ids, special = list(enc["input_ids"][0]), enc["special_tokens_mask"][0]
        mask_id = tokenizer.convert_tokens_to_ids(mask)
        pos = next((i for i, (t, s) in enumerate(zip(ids, special)) if t == mask_id and not s), None)
        if pos is None:
            raise DataError(f"the mask of row {masked[:60]!r} lies beyond max_length={max_length}; shorten the row")
        return ids, pos

    def training_inputs(self, tokenizer, masked: str, target: str, max_length: int) -> Row:
        ids, pos = self.masked_ids(tokenizer, masked, max_length)
        return ids, [pos], [self.target_token_ids(tokenizer, target)[0]]

    def scoring_inputs(self, tokenizer, masked: str, k: int, max_length: int) -> tuple[list[int], list[int]]:
        ids, pos = self.masked_ids(tokenizer, masked, max_length)
        return ids, [pos]

    # -- the auxiliary head
    def head_fn(self, model):
        return None  # the head reads pooled states, not one position's: label_logits does it

    def label_logits(self, model, enc: Encoded, fast: bool = True) -> torch.Tensor:
        """(N, V): the head's logits at its words' token ids, -inf elsewhere."""
        head = aux_head(model)
        if head is None:
            raise ModelError(f"{type(model).__name__} has no {self.head_kind} head yet; prepare-model fits it "
                             "(model.fit_head: auto)")
        spec = getattr(model.config, CONFIG_KEY)
        hidden = self.backbone(model)(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                                      use_cache=False).last_hidden_state               # (B, T, H)
        small = head(pool(hidden, enc.attention_mask, enc.rows, enc.cols, int(spec["pooling"])))  # (N, C)
        V = model.get_input_embeddings().num_embeddings
        ids = torch.tensor(spec["token_ids"], dtype=torch.long, device=small.device)
        return small.new_full((small.shape[0], V), float("-inf")).index_copy(1, ids, small)

    def init_head(self, model, seed: int) -> None:
        raise ModelError(f"objective '{self.name}' creates its head when fitting it (it needs the class words)")

    def fit_head(self, model, tokenizer, texts: Sequence[str], cfg=None, reset: bool = False,
                 name: str | None = None, classes: dict | None = None) -> dict:
        """Create the head over the class words and fit it on masked occurrences in `texts` (decoder frozen)."""
        from gradiend_core.head import HeadFitConfig

        if not classes:
            raise ModelError(f"objective '{self.name}' fits its head on the class words; pass the data's classes")
        return _fit(self, model, tokenizer, texts, (cfg or HeadFitConfig()).validate(), classes)


# ----------------------------------------------------------------------------- the head module

def aux_head(model) -> nn.Linear | None:
    head = getattr(model, AUX, None)
    return head if isinstance(head, nn.Linear) else None


def attach_head(model, spec: dict, state: dict | None = None, seed: int = 0) -> nn.Linear:
    """Create the head described by `spec` on the model (weights from `state`, else N(0, 0.02) from seed,
    zero bias: the reference's init) and record `spec` in the config."""
    hidden = model.get_input_embeddings().embedding_dim
    head = nn.Linear(hidden, len(spec["words"]))
    with torch.no_grad():
        if state is None:
            head.weight.copy_(torch.randn(head.weight.shape, generator=torch.Generator().manual_seed(seed)) * 0.02)
            head.bias.zero_()
        else:
            try:
                head.load_state_dict(state)
            except RuntimeError as e:
                raise ModelError(f"the {AUX} tensors do not match its config ({e}); re-run prepare-model") from e
    model.add_module(AUX, head.to(next(model.parameters()).device))
    setattr(model.config, CONFIG_KEY, dict(spec))
    return head


def _head_tensors(path: Path) -> dict:
    from safetensors import safe_open

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            out.update({k[len(AUX) + 1:]: sf.get_tensor(k) for k in sf.keys() if k.startswith(AUX + ".")})
    return out


def pool(hidden: torch.Tensor, attention: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
         length: int) -> torch.Tensor:
    """(N, H) means of hidden[rows[n], cols[n] : cols[n] + length] over real (attended) tokens."""
    T = hidden.shape[1]
    idx = cols[:, None] + torch.arange(length, device=cols.device)              # (N, L)
    valid = (idx < T) & (attention[rows[:, None], idx.clamp(max=T - 1)] > 0)     # (N, L)
    states = hidden[rows[:, None], idx.clamp(max=T - 1)]                         # (N, L, H)
    w = valid.to(hidden.dtype)[..., None]
    return (states * w).sum(1) / w.sum(1)


# ----------------------------------------------------------------------------- fitting

def head_rows(texts: Sequence[str], words: list[str]) -> list[tuple[str, int]]:
    """(masked text, word index) for every whole-word occurrence (any case) of a class word in the texts."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b",
                         re.IGNORECASE)
    index = {w.lower(): i for i, w in enumerate(words)}
    return [(t[:m.start()] + MASK + t[m.end():], index[m.group(1).lower()])
            for t in texts for m in pattern.finditer(t)]


def head_spec(objective: CausalLMWithMLMHead, tokenizer, classes: dict) -> dict:
    """words (every class word once, class order), their token ids (distinct), pooling, mask token."""
    words = list(dict.fromkeys(w.strip().lower() for ws in classes.values() for w in ws))
    ids = [objective.target_token_ids(tokenizer, w)[0] for w in words]
    if len(set(ids)) != len(ids):
        clash = sorted(w for w, i in zip(words, ids) if ids.count(i) > 1)
        raise ModelError(f"class words {clash} share their first token in {model_name(tokenizer)}; the auxiliary "
                         "head identifies each word by it: use words with distinct first tokens")
    return {"words": words, "token_ids": ids, "pooling": POOLING, "mask_token": objective.mask_token(tokenizer)}


@torch.no_grad()
def _pooled(objective, model, tokenizer, rows: list[tuple[str, int]], cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen-decoder pooled states (M, H) and word indices (M,) of the head rows."""
    pad, hs = pad_id(tokenizer), []
    for s in range(0, len(rows), cfg.encode_batch_size):
        chunk = [objective.masked_ids(tokenizer, m, cfg.max_length) for m, _ in rows[s:s + cfg.encode_batch_size]]
        enc = collate([(ids, [pos], [0]) for ids, pos in chunk], pad)
        hidden = objective.backbone(model)(input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                                           use_cache=False).last_hidden_state
        hs.append(pool(hidden, enc.attention_mask, enc.rows, enc.cols, POOLING).float())
    return torch.cat(hs), torch.tensor([w for _, w in rows], dtype=torch.long)


def _fit(objective, model, tokenizer, texts: Sequence[str], cfg, classes: dict) -> dict:
    from gradiend_core.head import _accuracy, _curve, _split, _train

    t0 = time.perf_counter()
    spec = head_spec(objective, tokenizer, classes)
    rows = head_rows([t for t in texts if isinstance(t, str)], spec["words"])
    if len({w for _, w in rows}) < 2:
        raise DataError(f"the texts hold fewer than 2 of the class words {spec['words']}; the auxiliary head needs "
                        "masked occurrences of at least two words (use the data's corpus)")
    model.eval()
    head = attach_head(model, spec, seed=cfg.seed)
    train_rows, held_rows = _split(rows, cfg)
    h_tr, y_tr = _pooled(objective, model, tokenizer, train_rows, cfg)
    held = _pooled(objective, model, tokenizer, held_rows, cfg) if held_rows else None
    acc_before = _accuracy(head, *held) if held else float("nan")
    losses = _train(model, head, list(head.parameters()), (h_tr, y_tr, torch.arange(len(y_tr))), len(y_tr), cfg)
    return {"steps": cfg.steps, "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed, "words": spec["words"],
            "n_train_rows": len(train_rows), "n_heldout_rows": len(held_rows),
            "trainable_parameters": int(sum(p.numel() for p in head.parameters())),
            "heldout_accuracy_before": acc_before,
            "heldout_accuracy_after": _accuracy(head, *held) if held else float("nan"),
            "train_loss_first": losses[0], "train_loss_last": losses[-1], "train_loss_curve": _curve(losses),
            "seconds": round(time.perf_counter() - t0, 3)}
