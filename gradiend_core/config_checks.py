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
