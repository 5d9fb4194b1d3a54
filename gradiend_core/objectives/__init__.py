"""Prediction objectives (model families), registered by name.

A family is ONE module in this package, named like the family (mlm.py -> "mlm"), whose `Objective`
subclass is decorated with `@register`. Modules are imported on first use, so listing the names
(`names()`, e.g. to validate a config) imports neither torch nor transformers. Module names that start
with "_", and base.py, are not families.

`resolve(config, requested)` picks the family for a transformers config: "auto" asks every family how
strongly it recognises the config (`Objective.auto_score`) and takes the highest; a requested name is
checked to be able to serve the model (`Objective.cannot_serve`).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, TypeVar

from gradiend_core.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from gradiend_core.objectives.base import Objective

AUTO = "auto"
_NOT_FAMILIES = {"base"}
_CLASSES: dict[str, type] = {}
_INSTANCES: dict[str, "Objective"] = {}
T = TypeVar("T")


def register(cls: type[T]) -> type[T]:
    """Class decorator: make an Objective subclass available under its `name`."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == AUTO:
        raise TypeError(f"{cls.__name__} needs a class attribute `name` (a family name other than 'auto')")
    old = _CLASSES.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ConfigError(f"objective '{name}' is registered twice ({_CLASSES[name].__name__}, {cls.__name__}); "
                          "give the new family another name")
    _CLASSES[name] = cls
    _INSTANCES.pop(name, None)
    return cls


def _modules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(__path__)
            if not m.name.startswith("_") and m.name not in _NOT_FAMILIES]


def names() -> list[str]:
    """Every family name, sorted (the modules of this package and anything registered from outside)."""
    return sorted(set(_modules()) | set(_CLASSES))


def get_objective(objective: "str | Objective") -> "Objective":
    """The objective registered as `objective` (an Objective instance is returned as is)."""
    if not isinstance(objective, str):
        return objective
    if objective not in _CLASSES and objective in _modules():
        importlib.import_module(f"{__name__}.{objective}")
    if objective not in _CLASSES:
        raise ConfigError(f"unknown objective {objective!r}; use one of: {', '.join(names())} (or '{AUTO}' "
                          "to pick it from the model config)")
    if objective not in _INSTANCES:
        _INSTANCES[objective] = _CLASSES[objective]()
    return _INSTANCES[objective]


def all_objectives() -> list["Objective"]:
    """One instance of every family, in name order."""
    return [get_objective(n) for n in names()]


def resolve(config, requested: "str | Objective" = AUTO) -> "Objective":
    """The family that serves a transformers config: the best `auto_score` for "auto", else the requested
    one after checking that it can serve the model (ModelError if not)."""
    if requested != AUTO:
        obj = get_objective(requested)
        reason = obj.cannot_serve(config)
        if reason is not None:
            able = [o.name for o in all_objectives() if o.cannot_serve(config) is None]
            raise ModelError(f"objective '{obj.name}' cannot serve {reason}; use objective '{AUTO}' or one that "
                             f"can: {', '.join(able) or 'none'}")
        return obj
    score, best = max(((o.auto_score(config), o) for o in all_objectives()), key=lambda s: s[0],
                      default=(0, None))
    if best is None or score <= 0:
        raise ModelError(_unrecognised(config))
    return best


def _unrecognised(config) -> str:
    model_type = getattr(config, "model_type", "")
    if getattr(config, "is_encoder_decoder", False):
        return (f"model type '{model_type}' is encoder-decoder without a seq2seq LM head that objective '{AUTO}' "
                "serves; use a T5/BART-like seq2seq LM, an encoder (masked LM) or a decoder-only (causal LM) model")
    return (f"model type '{model_type}' has neither a masked-LM nor a causal-LM head that an objective "
            f"({', '.join(names())}) recognises; use a BERT-like masked LM or a decoder-only causal LM")
