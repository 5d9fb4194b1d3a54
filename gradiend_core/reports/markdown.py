"""Markdown and table helpers for UI artifacts, and the artifacts' stable keys.

Keys are `<experiment-slug>-<stage>[-suffix]` (lowercase letters, digits, dashes), so every run of an
experiment adds a new version under the same key in the Prefect UI. An artifact spec is
{kind: "markdown" | "table", key, content, description}.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

MAX_SLUG_LEN = 48
KEY_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def slugify(text: str, max_len: int = MAX_SLUG_LEN) -> str:
    """Lowercase letters, digits and single dashes ("Pronoun Number (BERT)" -> "pronoun-number-bert")."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    s = s[:max_len].rstrip("-")
    return s or "experiment"


def artifact_key(experiment: str, stage: str, suffix: str | None = None) -> str:
    return slugify("-".join(p for p in (slugify(experiment), stage, suffix) if p), max_len=200)


def fan_suffix(manifest: dict) -> str | None:
    """A fanned-out stage's value as a key suffix (train-seed's seed, rewrite's "<class>-<direction>");
    None for other stages."""
    conf = manifest.get("config") or {}
    request = conf.get("request")
    if isinstance(request, dict):
        return f"{request.get('class')}-{request.get('direction')}"
    seed = conf.get("seed")
    if seed is None:
        return None
    seed = int(seed)
    return str(seed) if seed >= 0 else f"neg{-seed}"  # "-1" would collide with seed 1 after slugify


def interval(v: Any, lo: Any, hi: Any, digits: int = 3) -> str:
    """'+0.048 [+0.031, +0.066]' (signed: a change or a difference), '–' when missing."""
    if json_safe(v) is None:
        return "–"
    signed = lambda x: "–" if json_safe(x) is None else f"{float(x):+.{digits}g}"  # noqa: E731
    return f"{signed(v)} [{signed(lo)}, {signed(hi)}]"


def main_key(manifest: dict, experiment: str) -> str:
    return artifact_key(experiment, manifest["stage"], fan_suffix(manifest))


def artifact_keys(manifest: dict, experiment: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Keys a stage's report produces for this manifest (cheap: reads no files)."""
    return [main_key(manifest, experiment)] + [artifact_key(experiment, manifest["stage"], s) for s in extra]


def link(key: str, ui_url: str | None = None) -> str:
    """A markdown link to an artifact of the Prefect UI (relative when the UI's address is not known)."""
    base = (ui_url or "").rstrip("/")
    return f"[`{key}`]({base}/artifacts/key/{key})"


def json_safe(v: Any) -> Any:
    """Plain JSON values for a table artifact (NaN/inf -> None, numpy scalars -> Python)."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy / torch scalar
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fmt(v: Any, digits: int = 4) -> str:
    """One markdown table cell: short numbers, '–' for missing, pipes escaped."""
    v = json_safe(v)
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "_(no rows)_"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(fmt(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def header(manifest: dict, title: str) -> str:
    seconds = float(manifest.get("seconds") or 0)
    status = "reused from the store" if manifest.get("cached") else f"computed in {seconds:.1f} s"
    return f"## {title}\n\nstage `{manifest['stage']}` · key `{manifest.get('key', '?')}` · {status}\n"


def spec(kind: str, key: str, content, description: str) -> dict:
    return {"kind": kind, "key": key, "content": content, "description": description}


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def out(manifest: dict | None) -> Path | None:
    """The output directory of a manifest (None for a missing report)."""
    return Path(manifest["path"]) if manifest else None


def info(manifest: dict | None) -> dict:
    return (manifest or {}).get("info") or {}
