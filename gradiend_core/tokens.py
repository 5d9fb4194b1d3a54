"""The literal placeholder a masked sentence carries where its target word goes.

Defined once here: data creation writes it (data/schema.py re-exports it), the prediction objectives
(objectives/) replace it by mask tokens or cut the prefix before it, the extract stage writes it into
neutral rows.
"""
from __future__ import annotations

from gradiend_core.errors import DataError

MASK = "[MASK]"


def split_at_mask(masked: str) -> tuple[str, str]:
    """(text before the first MASK, text after it); DataError when there is none."""
    i = masked.find(MASK)
    if i < 0:
        raise DataError(f"masked text has no {MASK} placeholder: {masked[:80]!r}; put {MASK} where the "
                        "target word goes")
    return masked[:i], masked[i + len(MASK):]
