"""Which layer and which component a base-model tensor belongs to, from its parameter name alone.

Names are split at dots and read segment by segment (case-insensitive); the rules cover BERT,
GPT-2, T5 and BART naming, and anything else falls into "other":
- layer: the number after the first layer container segment (`layer`, `layers`, `h`, `block`,
  `blocks`): "layer N", or "decoder layer N" when a `decoder` segment comes before it (seq2seq
  decoder stacks; GPT-2's `transformer.h.N` is "layer N"). A tensor outside the stack is
  "embeddings" when a segment names an embedding (`embed*`, `wte`, `wpe`, `shared`), else "other"
  (final norms, pooler).
- component (first rule that applies): "norm" (`*norm*`, `ln`, `ln_*`), "attention" (`*attn*`,
  `*attention*`, which includes T5's relative attention bias), "embeddings" (as above), "mlp"
  (`mlp`, `intermediate`, `DenseReluDense`, `fc1`/`fc2`, `c_fc`, `wi`/`wo`, `ffn`, ... and BERT's
  feed-forward `layer.N.output.*`), else "other".
"""
from __future__ import annotations

import re
from typing import Callable

from gradiend_core.errors import ConfigError

COMPONENTS = ("embeddings", "attention", "mlp", "norm", "other")
_CONTAINERS = {"layer", "layers", "h", "block", "blocks"}
_MLP = {"mlp", "intermediate", "densereludense", "ffn", "ff", "feed_forward", "feedforward", "fc1", "fc2",
        "c_fc", "wi", "wo", "wi_0", "wi_1", "dense_h_to_4h", "dense_4h_to_h", "gate_proj", "up_proj", "down_proj"}
_LN = re.compile(r"ln(_\w+)?")


def _segments(name: str) -> list[str]:
    return name.lower().split(".")


def _stack_position(segs: list[str]) -> int | None:
    """Position of the layer number: the first digit segment right after a layer container."""
    for i in range(1, len(segs)):
        if segs[i].isdigit() and segs[i - 1] in _CONTAINERS:
            return i
    return None


def _is_embedding(segs: list[str]) -> bool:
    return any("embed" in s or s in ("wte", "wpe", "shared") for s in segs)


def layer_of(name: str) -> str:
    """"layer N" | "decoder layer N" | "embeddings" | "other" (see the module docstring)."""
    segs = _segments(name)
    pos = _stack_position(segs)
    if pos is None:
        return "embeddings" if _is_embedding(segs) else "other"
    prefix = "decoder layer" if "decoder" in segs[:pos] else "layer"
    return f"{prefix} {int(segs[pos])}"


def component_of(name: str) -> str:
    """One of COMPONENTS (see the module docstring)."""
    segs = _segments(name)
    if any("norm" in s or _LN.fullmatch(s) for s in segs):
        return "norm"
    if any("attn" in s or "attention" in s for s in segs):
        return "attention"
    if _is_embedding(segs):
        return "embeddings"
    pos = _stack_position(segs)
    if any(s in _MLP for s in segs) or (pos is not None and segs[pos + 1:pos + 2] == ["output"]):
        return "mlp"
    return "other"


def layer_sort_key(label: str) -> tuple:
    """embeddings, layers in stack order (encoder before decoder), other."""
    m = re.fullmatch(r"(decoder )?layer (\d+)", label)
    if m:
        return (1, 1 if m.group(1) else 0, int(m.group(2)), "")
    return (0 if label == "embeddings" else 2, 0, 0, label)


def _appearance(label: str) -> tuple:
    return ()  # a stable sort keeps the order of first appearance in the layout


def group_function(group_by: str | Callable[[str], str]) -> tuple[Callable[[str], str], Callable[[str], tuple]]:
    """(tensor name -> group label, group label -> sort key) for "param" | "layer" | "component" | a callable.
    Groups sort by the key, ties (and "param" / callables) in the order the layout first meets them."""
    if callable(group_by):
        return group_by, _appearance
    if group_by == "param":
        return (lambda n: n), _appearance
    if group_by == "layer":
        return layer_of, layer_sort_key
    if group_by == "component":
        return component_of, lambda g: (COMPONENTS.index(g), g)
    raise ConfigError(f"unknown group_by {group_by!r}; use param, layer, component or a function of the tensor name")
