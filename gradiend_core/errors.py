"""Error types. Each message is one line: what is wrong, and how to fix it."""


class GradiendError(ValueError):
    """Base class for user-facing errors (a ValueError so generic callers still catch it)."""


class ConfigError(GradiendError):
    """An experiment or stage configuration is invalid."""


class ModelError(GradiendError):
    """A base model, tokenizer or GRADIEND checkpoint cannot be used."""


class DataError(GradiendError):
    """Input texts or generated data cannot be used."""


class StoreError(GradiendError):
    """The artifact store is unusable (read-only, full, corrupted)."""
