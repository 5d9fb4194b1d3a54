"""UI report of post-prune: input dims before and after."""
from __future__ import annotations

import json

from .markdown import header, info, main_key, spec


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    i = info(m)
    md = (header(m, "Post-pruning") + f"\nGRADIEND input dims: {i.get('input_dim_before', 0):,} -> "
          f"{i.get('input_dim', 0):,} (config: `{json.dumps((m.get('config') or {}).get('post_prune'))}`)")
    return [spec("markdown", main_key(m, exp), md, f"{i.get('input_dim')} input dims kept")]
