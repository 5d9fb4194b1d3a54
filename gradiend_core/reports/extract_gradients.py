"""UI report of extract-gradients: rows, stored dims, bytes and throughput of the gradient store."""
from __future__ import annotations

from .markdown import header, human_bytes, info, main_key, md_table, out, spec

BYTES_PER_VALUE = {"float16": 2, "bfloat16": 2, "float32": 4}


def store_bytes(manifest: dict, prefix: str = "gradients.zarr/") -> int:
    """Bytes on disk of the files under `prefix` (from the manifest's file list)."""
    return sum(int(f["size"]) for rel, f in (manifest.get("files") or {}).items() if rel.startswith(prefix))


def store_arrays(manifest: dict, prefix: str = "gradients.zarr/") -> list[str]:
    """Zarr arrays in the store: `<prefix><name>/zarr.json` entries."""
    names = set()
    for rel in manifest.get("files") or {}:
        parts = rel[len(prefix):].split("/") if rel.startswith(prefix) else []
        if len(parts) == 2 and parts[1] == "zarr.json":
            names.add(parts[0])
    return sorted(names)


def extraction_stats(manifest: dict) -> dict:
    """Rows, dim, stored vs raw bytes, compression ratio and throughput of an extract-gradients output."""
    i = info(manifest)
    n, dim, dtype = int(i["n_rows"]), int(i["dim"]), i.get("dtype", "float16")
    from ..grad_store import SCALE_COLS, SCALE_SUFFIX

    names = store_arrays(manifest)
    arrays = [a for a in names if not a.endswith(SCALE_SUFFIX)] or ["factual", "alternative"]
    scales = len(names) - len(arrays) if names else 0
    # (N, P) per array, uncompressed, plus the (N, blocks) float32 scales of each
    raw = n * dim * BYTES_PER_VALUE.get(dtype, 4) * len(arrays) + n * -(-dim // SCALE_COLS) * 4 * scales
    stored = store_bytes(manifest)
    seconds = float(manifest.get("seconds") or 0.0)
    return {"rows": n, "columns": dim, "dtype": dtype, "arrays": arrays, "raw_bytes": raw, "stored_bytes": stored,
            "compression_ratio": raw / stored if stored else None, "seconds": seconds,
            "rows_per_second": n / seconds if seconds > 0 else None,
            "raw_mb_per_second": raw / 1e6 / seconds if seconds > 0 else None}


def artifacts(m: dict, report: dict | None, exp: str) -> list[dict]:
    i, st = info(m), extraction_stats(m)
    base = i.get("base") or {}
    rows = [{"field": "rows (examples)", "value": st["rows"]},
            {"field": "columns (selected parameter entries, P)", "value": f"{st['columns']:,}"},
            {"field": "parameter tensors", "value": i.get("n_params")},
            {"field": "storage dtype", "value": st["dtype"]},
            {"field": "arrays", "value": ", ".join(st["arrays"])},
            {"field": "raw size (uncompressed)", "value": human_bytes(st["raw_bytes"])},
            {"field": "stored size on disk", "value": human_bytes(st["stored_bytes"])},
            {"field": "compression ratio (raw / stored)", "value": st["compression_ratio"]},
            {"field": "extraction time", "value": f"{st['seconds']:.1f} s"},
            {"field": "throughput", "value": "–" if st["rows_per_second"] is None else
             f"{st['rows_per_second']:.2f} rows/s ({st['raw_mb_per_second']:.1f} MB/s raw)"},
            {"field": "base model", "value": f"{base.get('name_or_path')} ({base.get('objective')})"}]
    splits = [{"split": k, "rows": v} for k, v in (i.get("splits") or {}).items()]
    md = (header(m, "Gradient extraction") + "\n" + md_table(rows) + "\n\n**Rows per split**\n\n"
          + md_table(splits) + f"\n\nstore: `{out(m) / 'gradients.zarr'}`")
    ratio = st["compression_ratio"]
    return [spec("markdown", main_key(m, exp), md,
                 f"{st['rows']} x {st['columns']} gradients, {human_bytes(st['stored_bytes'])} stored"
                 + (f" ({ratio:.2f}x)" if ratio else ""))]
