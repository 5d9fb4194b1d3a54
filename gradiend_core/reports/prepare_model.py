"""UI report of prepare-model: the base model and, when one was fitted, the masked-LM head fit."""
from __future__ import annotations

from .markdown import header, info, main_key, md_table, spec


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    i = info(m)
    head = i.get("head")
    rows = [{"field": "model", "value": i.get("name_or_path")}, {"field": "objective", "value": i.get("objective")},
            {"field": "parameters", "value": f"{int(i.get('n_parameters') or 0):,}"},
            {"field": "weights digest", "value": str(i.get("digest", ""))[:16]},
            {"field": "masked-LM head", "value": "fitted on the corpus" if head else "from the checkpoint"},
            {"field": "model directory", "value": f"`{i.get('model_dir')}`"}]
    md = header(m, "Base model") + "\n" + md_table(rows)
    if isinstance(head, dict):
        md += "\n\n**Head fit**\n\n" + md_table([{"field": k, "value": v} for k, v in head.items()
                                                 if not isinstance(v, (list, dict))])
    return [spec("markdown", main_key(m, exp), md, f"base model {i.get('name_or_path')}")]
