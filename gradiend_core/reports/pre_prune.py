"""UI report of pre-prune: kept input dims per parameter tensor."""
from __future__ import annotations

import math
from pathlib import Path

from .markdown import header, info, main_key, out, read_json, spec


def _param_rows(directory: Path) -> list[dict] | None:
    p = directory / "param_map.json"
    return read_json(p)["param_map"] if p.is_file() else None


def pre_prune_table(manifest: dict) -> list[dict]:
    """Kept input dims per parameter tensor (map order), against the tensor's size (taken whole)."""
    i = info(manifest)
    pruned = _param_rows(out(manifest)) or []
    kept = i.get("kept_per_param") or {r["name"]: r["num_selected"] for r in pruned}
    rows = []
    for r in pruned:
        total, k = math.prod(r["shape"]), int(kept.get(r["name"], 0))
        rows.append({"parameter": r["name"], "shape": "x".join(map(str, r["shape"])), "kept": k,
                     "before": total, "kept_pct": round(100.0 * k / total, 3) if total else None})
    return rows


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    i, key = info(m), main_key(m, exp)
    if not i.get("pruned"):
        md = header(m, "Pre-pruning") + f"\npre-pruning is disabled: all {i.get('dim', 0):,} input dims are kept."
        return [spec("markdown", key, md, "pre-pruning disabled")]
    rows = pre_prune_table(m)
    dim, full = int(i["dim"]), int(i.get("unpruned_dim") or sum(r["before"] for r in rows))
    desc = f"kept {dim:,} of {full:,} input dims ({100.0 * dim / full:.2f}%) over {len(rows)} tensors"
    return [spec("table", key, rows, desc)]
