"""Small validators the typed configs share; each raises a one-line ConfigError that names the setting."""
from __future__ import annotations

from .errors import ConfigError


def positive(where: str, **values: float | int | None) -> None:
    """Every given value is None or > 0."""
    for name, v in values.items():
        if v is not None and v <= 0:
            raise ConfigError(f"{where}.{name} must be > 0, got {v}")


def fraction_or_count(where: str, name: str, v: float | int | None) -> None:
    """A float in (0, 1] (a fraction) or an int >= 1 (a count)."""
    if v is None:
        return
    if isinstance(v, float) and not (0.0 < v <= 1.0):
        raise ConfigError(f"{where}.{name}: a fraction must be in (0, 1], got {v}; or give an int count")
    if isinstance(v, int) and v < 1:
        raise ConfigError(f"{where}.{name}: a count must be >= 1, got {v}")


SEED_MAX = 2**32 - 1  # numpy's generators take seeds in [0, 2**32 - 1]; torch's and Python's take those too


def seed(where: str, v: int, count: int = 1) -> None:
    """An int seed in [0, 2**32 - 1] (with `count` consecutive seeds from it: the last one too)."""
    if not 0 <= v <= SEED_MAX - (count - 1):
        top = SEED_MAX - (count - 1)
        raise ConfigError(f"{where} must be an integer in [0, {top}], got {v}; seeds are non-negative"
                          + (f" (it is the first of {count} seeds)" if count > 1 else ""))
