"""Typed dataclass configs from plain dicts: unknown keys get a suggestion, wrong types a clear reason.

Every stage has a dataclass config; `from_dict(cls, data, where)` builds one from a YAML mapping,
checking key names and value types against the dataclass annotations before any work starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Literal, Union

from .errors import ConfigError

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NON_FINITE = re.compile(r"[+-]?\.?(inf|infinity|nan)", re.IGNORECASE)


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def suggest(name: str, options: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data` (a mapping), validating keys and types; `where` names the section."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where or 'experiment'}: unknown key '{key}'{suggest(str(key), fields)}; "
                              f"valid keys: {', '.join(fields)}")
        kwargs[key] = coerce(value, hints[key], _join(where, key))
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        try:
            obj.validate()
        except ConfigError as e:
            raise ConfigError(_within(where, str(e), fields)) from None
    return obj


def _within(where: str, msg: str, fields) -> str:
    """A section's validation message, naming the section: "learning_rate must be > 0" in section
    "train" reads "train.learning_rate must be > 0"."""
    if not where or msg.startswith(where):
        return msg
    first = msg.split(" ", 1)[0]
    return f"{where}.{msg}" if first in fields else f"{where}: {msg}"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    fail = ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    _check_finite(value, where)
    if isinstance(value, str) and _NON_FINITE.fullmatch(value.strip()) and float in (tp, *typing.get_args(tp)):
        _check_finite(float(value.strip().replace(".", "")), where)  # `inf`, `nan`: YAML reads them as text
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        sections = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        if isinstance(value, dict) and len(sections) == 1:  # an optional section: its own error messages
            return from_dict(sections[0], value, where)
        if type(value) in typing.get_args(tp):  # exactly one of the types: kept as written (int | float:
            return value                        # 1 stays the count 1, 1.0 the fraction 1.0)
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise fail
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        opts = [str(a) for a in typing.get_args(tp)]
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(opts)}{suggest(str(value), opts)}")
    if tp is type(None):
        if value is None:
            return None
        raise fail
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail
        (arg, *_) = typing.get_args(tp) or (Any,)
        return [coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {coerce(str(k) if kt is str else k, kt, where): coerce(v, vt, f"{where}.{k}")
                for k, v in value.items()}
    if tp in (bool, int, float, str):
        return _coerce_scalar(value, tp, where, fail)
    return value


def _coerce_scalar(value: Any, tp: type, where: str, fail: ConfigError) -> Any:
    if tp is bool or tp is str:
        if isinstance(value, tp):
            return value
        raise fail
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise fail
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # float
        return float(value)
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string
        _check_finite(number, where)  # `1e999`
        return number
    raise fail


def _check_finite(value: Any, where: str) -> None:
    """No setting takes an infinite or NaN number (YAML `.inf`, `.nan`, `1e999`): each would pass a
    `> 0` check and fail only in the stage that uses it."""
    if isinstance(value, (list, tuple)):  # checked here too: a union's failed member (list[float] | null)
        for i, v in enumerate(value):       # would otherwise hide the reason behind "expected ..."
            _check_finite(v, f"{where}[{i}]")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number; give a finite value")


def to_dict(obj: Any) -> Any:
    """Plain JSON-able dict of a (nested) dataclass config."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
