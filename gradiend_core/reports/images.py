"""Plots inlined into UI artifacts as PNG data URIs, shrunk (palette, then downscaled) to at most
MAX_IMAGE_BYTES so the Prefect database stays small."""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path

MAX_IMAGE_BYTES = 100_000


def _flatten_rgb(img):
    from PIL import Image

    img = img.convert("RGBA")
    bg = Image.new("RGBA", img.size, "white")
    bg.alpha_composite(img)
    return bg.convert("RGB")


def _png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def shrink_png(data: bytes, max_bytes: int = MAX_IMAGE_BYTES) -> bytes | None:
    """PNG bytes no larger than max_bytes: as is, else 256-colour palette, else downscaled; None if hopeless."""
    if len(data) <= max_bytes:
        return data
    from PIL import Image

    img = _flatten_rgb(Image.open(io.BytesIO(data)))
    out = _png_bytes(img.quantize(colors=256))  # plots use few colours: a palette PNG is much smaller
    scale = 1.0
    for _ in range(12):
        if len(out) <= max_bytes:
            return out
        scale *= min(0.85, 0.95 * math.sqrt(max_bytes / len(out)))  # bytes scale roughly with pixels
        w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        if w < 64 or h < 64:
            return None
        out = _png_bytes(img.resize((w, h), Image.LANCZOS).quantize(colors=256))
    return out if len(out) <= max_bytes else None


def png_data_uri(path: str | Path | None, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """`data:image/png;base64,...` of a PNG file (shrunk to max_bytes), or None if missing/unusable."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    data = shrink_png(p.read_bytes(), max_bytes)
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def md_image(path: str | Path | None, alt: str) -> str:
    uri = png_data_uri(path)
    if uri is None:
        return f"_(plot `{Path(path).name if path else alt}` not available)_"
    return f"![{alt}]({uri})"


def report_file(report: dict | None, name: str) -> Path | None:
    """A file of a stage's report output (None when the report was not drawn)."""
    return Path(report["path"]) / name if report else None
