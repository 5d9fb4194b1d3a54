"""The `Objective` interface: everything that differs between model families, and the pieces they share.

An objective says how a family's model is loaded (which transformers Auto class; how a config is
recognised for `auto`), how a target word becomes token ids, what the inputs of a masked row are for
training (gradient extraction) and for scoring (the decoder grid's class probabilities), how the LMS is
prepared and scored, which parameters are the head and which the backbone, how the LM head is run at
selected positions, what the tokenizer must provide, and how a missing head is initialised and fitted.

Every text a family feeds its model goes through ONE encoding path, `Objective.tokenize` (the
tokenizer's own special tokens, e.g. BOS for Llama/OPT; none for GPT-2), so extraction, the decoder
grid and the LMS see the same ids for the same text.

Tensor notation: B rows, T tokens, N labelled/selected positions, H hidden size, V vocabulary size.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from gradiend_core.errors import ModelError
from gradiend_core.param_map import backbone_module

Row = tuple[list[int], list[int], list[int]]  # (ids, label positions, label ids) of one training row
LMS_KINDS = ("accuracy", "log_prob")  # what an LMS measures per scored position (Objective.lms_values)


# ----------------------------------------------------------------------------- encoded batches

@dataclass
class Encoded:
    """A right-padded batch and its labelled positions (N = number of labels over the batch)."""
    input_ids: torch.Tensor       # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    rows: torch.Tensor            # (N,) which example each label belongs to
    cols: torch.Tensor            # (N,) position whose logits score the label
    labels: torch.Tensor          # (N,) target token ids

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]


def collate(rows: Sequence[Row], pad_id: int) -> Encoded:
    """Right-pad to the longest row; label positions are unchanged by right padding."""
    T = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(rows), T), dtype=torch.long)         # (B, T)
    r, c, y = [], [], []
    for i, (ids, cols, labels) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[i, :len(ids)] = 1
        r += [i] * len(cols)
        c += cols
        y += labels
    as_long = lambda v: torch.tensor(v, dtype=torch.long)  # noqa: E731
    return Encoded(input_ids, attention, as_long(r), as_long(c), as_long(y))


def pad_id(tokenizer) -> int:
    """The padding id: pad token, else EOS (GPT-2 has no pad token), else 0."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


# ----------------------------------------------------------------------------- LMS inputs

@dataclass
class PreparedLMS:
    """Tokenised, masked (MLM) and padded batches, reusable across models.

    Each batch is a dict of CPU tensors: input_ids (B, T), attention_mask (B, T) and labels (B, T)
    (-100 where nothing is scored; MLM: the original id at masked positions; CLM: the token id).
    """

    objective: "Objective"
    batches: list[dict[str, torch.Tensor]] = field(repr=False)
    n_texts: int
    n_scored: int  # MLM: masked positions; CLM: predicted tokens (after the shift)


def lms_batches(rows: Sequence[tuple[list[int], list[int]]], pad: int, batch_size: int) -> list[dict]:
    """(ids, labels) rows -> right-padded batches of `batch_size` rows (dynamic padding)."""
    out = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s:s + batch_size]
        T = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), T), pad, dtype=torch.long)    # (B, T)
        att = torch.zeros((len(chunk), T), dtype=torch.long)        # (B, T)
        lab = torch.full((len(chunk), T), -100, dtype=torch.long)   # (B, T)
        for i, (seq, labels) in enumerate(chunk):
            ids[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            att[i, :len(seq)] = 1
            lab[i, :len(labels)] = torch.tensor(labels, dtype=torch.long)
        out.append({"input_ids": ids, "attention_mask": att, "labels": lab})
    return out


# ----------------------------------------------------------------------------- tokenizer helpers

def model_name(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def is_byte_level(tokenizer) -> bool:
    """True for GPT-2 style byte-level BPE, where a word after a space is a different token (" he")."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.pre_tokenizer is not None:
        return "ByteLevel" in repr(backend.pre_tokenizer)
    return any(k in type(tokenizer).__name__ for k in ("GPT2", "Roberta", "Bart", "Codegen"))


def word_ids(tokenizer, text: str, word: str) -> list[int]:
    """Ids of `text` (a form of `word`) without special tokens; ModelError if it cannot be encoded."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
    unk = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unk is not None and unk in ids):
        raise ModelError(f"target word '{word}' cannot be encoded by the tokenizer of {model_name(tokenizer)}; "
                         "use a word from the model's vocabulary")
    return ids


def mask_token_or_error(tokenizer, name: str | None = None) -> int:
    """Id of the tokenizer's mask token; ModelError if a masked-LM tokenizer has none."""
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise ModelError(f"the tokenizer of {name or model_name(tokenizer)} has no mask token; "
                         "a masked-LM objective needs one (use the model's own tokenizer)")
    return int(mask_id)


def missing_head_keys(model, missing: set[str]) -> list[str]:
    """Missing checkpoint keys outside the backbone, i.e. newly initialised head weights."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    return sorted(k for k in missing if not k.startswith(prefix))


# ----------------------------------------------------------------------------- the interface

class Objective(ABC):
    """One model family's prediction objective. Stateless: the registry keeps one instance per name."""

    name: ClassVar[str]              # registry name (= the module name in gradiend_core/objectives/)
    head_kind: ClassVar[str]         # what messages call the head, e.g. "masked-LM"
    pipeline_task: ClassVar[str]     # transformers.pipeline task a rewritten model loads with
    fits_head: ClassVar[bool] = False  # fit_head() can train a missing head (model.fit_head)
    scores_sequences: ClassVar[bool] = False  # the decoder grid scores sequence_row per candidate word
    head_needs_classes: ClassVar[bool] = False  # fit_head() needs the class words (prepare-model keys them)
    missing_head_fix: ClassVar[str] = "use a checkpoint that includes its LM head"

    def __repr__(self) -> str:
        return f"<objective {self.name}>"

    def __eq__(self, other) -> bool:  # instances are interchangeable (e.g. after pickling to a worker)
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    # -- recognising and loading a model
    @abstractmethod
    def auto_score(self, config) -> int:
        """How strongly `auto` should pick this family for a transformers config: 0 = not at all;
        the highest score over the registered families wins."""

    def cannot_serve(self, config) -> str | None:
        """Why this family cannot serve the config (None: it can); asked when it is requested by name."""
        if self.auto_score(config) > 0:
            return None
        return f"model type '{getattr(config, 'model_type', '?')}' (it has no {self.head_kind} head)"

    @abstractmethod
    def auto_model_class(self):
        """The transformers Auto class the model is loaded with, e.g. AutoModelForMaskedLM."""

    def pipeline_task_for(self, config) -> str:
        """The transformers.pipeline task a rewritten model of this config loads with (where a family
        serves several architectures that load differently, e.g. T5 and BART)."""
        return self.pipeline_task

    def load_model(self, path: str):
        """(model, loading info) from a local directory, float32 (info has missing_keys)."""
        return self.auto_model_class().from_pretrained(path, dtype=torch.float32, output_loading_info=True)

    def missing_head(self, model, missing_keys: set[str], name: str, allow: bool) -> bool | None:
        """The BaseLM.head_fitted state after loading: None = the checkpoint has its head; False = the head
        was missing and is newly initialised (only where allowed and fit_head can train it)."""
        if not missing_head_keys(model, missing_keys):
            return None
        if not (allow and self.fits_head):
            raise ModelError(f"'{name}' has no {self.head_kind} head; {self.missing_head_fix}")
        self.init_head(model, seed=0)  # HF drew the new head from the global RNG: make weights and digest stable
        return False

    def init_head(self, model, seed: int) -> None:
        raise ModelError(f"objective '{self.name}' cannot initialise a head; {self.missing_head_fix}")

    def fit_head(self, model, tokenizer, texts: Sequence[str], cfg=None, reset: bool = False,
                 name: str | None = None, classes: dict | None = None) -> dict:
        """Train the head on `texts` with the backbone frozen -> fit metrics (families with fits_head).
        classes: the data's class -> words, for a head over the class words (`head_needs_classes`)."""
        raise ModelError(f"objective '{self.name}' has no head to fit for '{name or type(model).__name__}'; "
                         "head fitting is for families with a separable head (e.g. mlm)")

    def check_tokenizer(self, tokenizer, name: str | None = None) -> None:
        """ModelError when the tokenizer lacks what this family needs (e.g. a mask token)."""

    def max_input_length(self, model, tokenizer) -> int:
        """Longest input the model accepts: min of its position limit and the tokenizer's model_max_length."""
        cfg = model.config
        limits = [getattr(cfg, k, None) for k in ("max_position_embeddings", "n_positions")]
        tok_max = getattr(tokenizer, "model_max_length", None)
        limits.append(tok_max if isinstance(tok_max, int) and tok_max < 1_000_000 else None)
        limits = [int(x) for x in limits if isinstance(x, int) and x > 0]
        return min(limits) if limits else 512

    # -- text and target words
    def tokenize(self, tokenizer, texts: Sequence[str], max_length: int | None = None, offsets: bool = False):
        """THE encoding of text for this family (extraction, decoder grid, LMS and head fitting): the
        tokenizer's own special tokens, cut at the end to max_length (None: no cut).
        -> BatchEncoding with input_ids and special_tokens_mask (and offset_mapping: each token's
        (start, end) characters, when `offsets`), lists per text."""
        extra = {"return_offsets_mapping": True} if offsets else {}
        return tokenizer(list(texts), truncation=max_length is not None, max_length=max_length,
                         return_special_tokens_mask=True, **extra)

    @abstractmethod
    def target_token_ids(self, tokenizer, word: str) -> list[int]:
        """Sub-token ids of a target word as the model must predict it."""

    def single_token_id(self, tokenizer, word: str) -> int:
        """The one token id of `word`; ModelError if the tokenizer splits it."""
        ids = self.target_token_ids(tokenizer, word)
        if len(ids) != 1:
            pieces = tokenizer.convert_ids_to_tokens(ids)
            raise ModelError(f"target word '{word}' is split into {len(ids)} tokens {pieces} by the tokenizer of "
                             f"{model_name(tokenizer)}, but a single token is needed here; use a one-token word")
        return ids[0]

    def scored_pieces(self, ids: list[int]) -> list[int]:
        """The pieces of a candidate word the decoder grid scores (all of them unless a family says less)."""
        return ids

    @abstractmethod
    def training_inputs(self, tokenizer, masked: str, target: str, max_length: int) -> Row:
        """(ids, label positions, label ids) of one masked row filled with `target` (gradient extraction)."""

    @abstractmethod
    def scoring_inputs(self, tokenizer, masked: str, k: int, max_length: int) -> tuple[list[int], list[int]]:
        """(ids, the k positions whose logits score a k-piece candidate) of one masked row (decoder grid)."""

    def sequence_row(self, tokenizer, masked: str, word: str, max_length: int) -> Row:
        """(ids, label positions, label ids) of one masked row filled with `word`, whose labelled tokens'
        log-probabilities add up to the word's score (families with scores_sequences)."""
        raise ModelError(f"objective '{self.name}' scores positions (scoring_inputs), not filled sentences")

    # -- parameters and the LM head
    def backbone(self, model) -> nn.Module:
        """The transformer body; every parameter outside it belongs to the head."""
        return backbone_module(model)

    def head_parameters(self, model) -> list[tuple[str, nn.Parameter]]:
        """Parameters outside the backbone (a decoder tied to the word embeddings is not among them)."""
        body = {id(p) for p in self.backbone(model).parameters()}
        return [(n, p) for n, p in model.named_parameters() if id(p) not in body]

    @abstractmethod
    def head_fn(self, model) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Maps backbone hidden states (N, H) to logits (N, V), or None when the model needs its full forward."""

    def forward_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of every forward pass (e.g. no KV cache for a causal LM)."""
        return {}

    def label_logits(self, model, enc: Encoded, fast: bool = True) -> torch.Tensor:
        """Logits (N, V) at the labelled positions only (unless the model has no separable head)."""
        kwargs = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, **self.forward_kwargs()}
        head = self.head_fn(model) if fast else None
        if head is not None:
            hidden = self.backbone(model)(**kwargs).last_hidden_state  # (B, T, H)
            return head(hidden[enc.rows, enc.cols])                     # (N, H) -> (N, V)
        logits = model(**kwargs).logits                                 # (B, T, V)
        return logits[enc.rows, enc.cols]

    def logits_at(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                  cols: torch.Tensor) -> torch.Tensor:
        """Logits (N, V) at positions (rows[i], cols[i]) of a padded batch (B, T).

        The LM head runs only there: on a MiniLM batch of 32 x 20 tokens with one position of interest
        per row, the full (B, T, 30522) logits would be ~15 GFLOP against ~14 for the transformer itself
        (2 x params x tokens; an estimate, not a measurement)."""
        empty = torch.empty(0, dtype=torch.long, device=input_ids.device)
        return self.label_logits(model, Encoded(input_ids, attention_mask, rows, cols, empty))

    @torch.no_grad()
    def sequence_log_probs(self, model, enc: Encoded) -> torch.Tensor:
        """Per row of `enc`: the sum of its labelled tokens' log-probabilities, (B,) float64."""
        logp = self.label_logits(model, enc).float().log_softmax(-1)  # (N, V)
        picked = logp.gather(1, enc.labels[:, None])[:, 0].double()   # (N,)
        return torch.zeros(enc.batch_size, dtype=torch.float64, device=picked.device).index_add_(0, enc.rows, picked)

    # -- language-modelling score on neutral text
    @abstractmethod
    def prepare_lms(self, tokenizer, texts: list[str], *, mask_ratio: float, seed: int, batch_size: int,
                    ignore_ids: tuple[int, ...], max_length: int) -> PreparedLMS:
        """Tokenise (and mask, where the family scores masked tokens) the texts once."""

    @abstractmethod
    def lms_values(self, model, prepared: PreparedLMS, kind: str = "accuracy") -> torch.Tensor:
        """One score per scored position, (n,) float64 in the prepared order (eval mode, no grad); the LMS
        is `lms_from_mean(values.mean(), kind)`, so two models scored on the same prepared inputs can be
        compared position by position (the decoder grid's paired bootstrap)."""

    def lms_from_mean(self, mean, kind: str = "accuracy"):
        """The LMS from the mean position score (a float or an array of bootstrap means): the mean itself
        (accuracy), or exp(mean log-probability) for log_prob (the inverse perplexity of the scored tokens:
        positive, so `lms_threshold`'s ratio keeps its meaning)."""
        return np.exp(mean) if kind == "log_prob" else mean

    def lms_summary(self, values: torch.Tensor, kind: str = "accuracy") -> dict:
        """{"lms", "n", ...} from the position scores of `lms_values`."""
        return {"lms": float(self.lms_from_mean(float(values.mean()), kind)), "n": int(values.numel())}

    def score_lms(self, model, prepared: PreparedLMS, kind: str = "accuracy") -> dict:
        """{"lms", "n", ...} of one model (eval mode, no grad) on prepared inputs."""
        return self.lms_summary(self.lms_values(model, prepared, kind), kind)
