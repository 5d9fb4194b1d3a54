"""Prefect UI artifacts for every pipeline stage, and one run report per flow run.

Two layers:
- content builders (pure, no server): `stage_artifact_content(manifest, experiment)` reads a stage's
  output directory and returns artifact specs {kind: "markdown"|"table", key, content, description};
  `run_report_markdown(summary, manifests, experiment)` renders the run report.
- a thin publish layer (`publish_stage_artifacts`, `publish_run_report`) that hands those specs to
  `prefect.artifacts`. It is called inside tasks/flows only. A UI artifact is decoration: a failure
  to build or create one is logged as a warning and never fails the stage that produced the data.

Keys are stable, `<experiment-slug>-<stage>[-suffix]` (lowercase letters, digits, dashes), so every run
of an experiment adds a new version under the same key in the UI. Plots are inlined as PNG data URIs,
shrunk (palette, then downscaled) to at most MAX_IMAGE_BYTES so the Prefect database stays small.
"""
from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Callable

MAX_IMAGE_BYTES = 100_000
MAX_SLUG_LEN = 48
BYTES_PER_VALUE = {"float16": 2, "bfloat16": 2, "float32": 4}
KEY_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

log = logging.getLogger("tasks.artifacts")

# Extra artifacts per stage, besides the main one keyed `<slug>-<stage>` (train-seed adds its seed).
EXTRA_SUFFIXES = {"create-data": ["rows"], "select-seed": ["runs"], "decoder-grid": ["cells"]}


# ----------------------------------------------------------------------------- keys

def slugify(text: str, max_len: int = MAX_SLUG_LEN) -> str:
    """Lowercase letters, digits and single dashes ("Pronoun Number (BERT)" -> "pronoun-number-bert")."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    s = s[:max_len].rstrip("-")
    return s or "experiment"


def artifact_key(experiment: str, stage: str, suffix: str | None = None) -> str:
    return slugify("-".join(p for p in (slugify(experiment), stage, suffix) if p), max_len=200)


def _seed_suffix(manifest: dict) -> str | None:
    seed = (manifest.get("info") or {}).get("seed", (manifest.get("config") or {}).get("seed"))
    if seed is None:
        return None
    seed = int(seed)
    return str(seed) if seed >= 0 else f"neg{-seed}"  # "-1" would collide with seed 1 after slugify


def artifact_keys(manifest: dict, experiment: str) -> list[str]:
    """Keys `stage_artifact_content` produces for this manifest (cheap: reads no files)."""
    stage = manifest["stage"]
    if stage == "train-seed":
        return [artifact_key(experiment, stage, _seed_suffix(manifest))]
    return [artifact_key(experiment, stage)] + [artifact_key(experiment, stage, s)
                                                 for s in EXTRA_SUFFIXES.get(stage, [])]


# ----------------------------------------------------------------------------- formatting

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


def _header(manifest: dict, title: str) -> str:
    seconds = float(manifest.get("seconds") or 0)
    status = "reused from the store" if manifest.get("cached") else f"computed in {seconds:.1f} s"
    return f"## {title}\n\nstage `{manifest['stage']}` · key `{manifest.get('key', '?')}` · {status}\n"


def _spec(kind: str, key: str, content, description: str) -> dict:
    return {"kind": kind, "key": key, "content": content, "description": description}


# ----------------------------------------------------------------------------- images

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


def png_data_uri(path: str | Path, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """`data:image/png;base64,...` of a PNG file (shrunk to max_bytes), or None if missing/unusable."""
    p = Path(path)
    if not p.is_file():
        return None
    data = shrink_png(p.read_bytes(), max_bytes)
    return None if data is None else "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def md_image(path: str | Path, alt: str) -> str:
    uri = png_data_uri(path)
    if uri is None:
        return f"_(plot `{Path(path).name}` not available)_"
    return f"![{alt}]({uri})"


# ----------------------------------------------------------------------------- stage builders

def _read_json(path: Path):
    return json.loads(Path(path).read_text())


def _out(manifest: dict) -> Path:
    return Path(manifest["path"])


def _info(manifest: dict) -> dict:
    return manifest.get("info") or {}


def _prepare_model(m: dict, exp: str) -> list[dict]:
    i = _info(m)
    head = i.get("head")
    rows = [{"field": "model", "value": i.get("name_or_path")}, {"field": "objective", "value": i.get("objective")},
            {"field": "parameters", "value": f"{int(i.get('n_parameters') or 0):,}"},
            {"field": "weights digest", "value": str(i.get("digest", ""))[:16]},
            {"field": "masked-LM head", "value": "fitted on the corpus" if head else "from the checkpoint"},
            {"field": "model directory", "value": f"`{i.get('model_dir')}`"}]
    md = _header(m, "Base model") + "\n" + md_table(rows)
    if isinstance(head, dict):
        md += "\n\n**Head fit**\n\n" + md_table([{"field": k, "value": v} for k, v in head.items()
                                                 if not isinstance(v, (list, dict))])
    return [_spec("markdown", artifact_key(exp, m["stage"]), md, f"base model {i.get('name_or_path')}")]


def data_rows_table(training, class_order: list[str]) -> list[dict]:
    """One row per (class, target word): count per split and total; classes in config order."""
    from gradiend_core.data.schema import SPLITS

    counts = training.groupby(["factual_class", "target_word", "split"]).size()
    rows = []
    for (cls, word), per_split in counts.groupby(level=[0, 1]):
        r = {"class": cls, "target_word": word}
        r.update({s: int(per_split.get((cls, word, s), 0)) for s in SPLITS})
        r["total"] = sum(r[s] for s in SPLITS)
        rows.append(r)
    rank = {c: i for i, c in enumerate(class_order)}
    rows.sort(key=lambda r: (rank.get(r["class"], len(rank)), -r["total"], r["target_word"]))
    return rows


def _create_data(m: dict, exp: str) -> list[dict]:
    import pandas as pd

    out = _out(m)
    s = _read_json(out / "summary.json")
    classes = [c for c, _ in _info(m)["classes"]] if _info(m).get("classes") else list(s["classes"])
    from gradiend_core.data.schema import SPLITS

    split_rows = [{"class": c, **{sp: s["class_splits"].get(c, {}).get(sp, 0) for sp in SPLITS},
                   "total": s["classes"].get(c, 0)} for c in classes]
    md = (_header(m, "Training data")
          + f"\n**{s['n_rows']}** training rows from **{s['n_sentences']}** sentences, "
            f"**{s['neutral']}** neutral sentences.\n\n"
          + "**Rows per class and split**\n\n" + md_table(split_rows) + "\n\n"
          + "**Rows per transition**\n\n"
          + md_table([{"transition": t, "rows": n} for t, n in s.get("transitions", {}).items()]) + "\n\n"
          + "**Target words** (rows per word)\n\n"
          + md_table([{"class": c, "words": ", ".join(f"{w} ({n})" for w, n in sorted(
              s["target_words"].get(c, {}).items(), key=lambda kv: -kv[1]))} for c in classes]))
    training = pd.read_parquet(out / "training.parquet", columns=["factual_class", "target_word", "split"])
    table = data_rows_table(training, classes)
    desc = f"{s['n_rows']} training rows, {len(classes)} classes"
    return [_spec("markdown", artifact_key(exp, m["stage"]), md, desc),
            _spec("table", artifact_key(exp, m["stage"], "rows"), table,
                  "training rows per class, target word and split")]


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
    i = _info(manifest)
    n, dim, dtype = int(i["n_rows"]), int(i["dim"]), i.get("dtype", "float16")
    arrays = store_arrays(manifest) or ["factual", "alternative"]
    raw = n * dim * BYTES_PER_VALUE.get(dtype, 4) * len(arrays)  # (N, P) per array, uncompressed
    stored = store_bytes(manifest)
    seconds = float(manifest.get("seconds") or 0.0)
    return {"rows": n, "columns": dim, "dtype": dtype, "arrays": arrays, "raw_bytes": raw, "stored_bytes": stored,
            "compression_ratio": raw / stored if stored else None, "seconds": seconds,
            "rows_per_second": n / seconds if seconds > 0 else None,
            "raw_mb_per_second": raw / 1e6 / seconds if seconds > 0 else None}


def _extract_gradients(m: dict, exp: str) -> list[dict]:
    i, st = _info(m), extraction_stats(m)
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
    md = (_header(m, "Gradient extraction") + "\n" + md_table(rows) + "\n\n**Rows per split**\n\n"
          + md_table(splits) + f"\n\nstore: `{_out(m) / 'gradients.zarr'}`")
    ratio = st["compression_ratio"]
    return [_spec("markdown", artifact_key(exp, m["stage"]), md,
                  f"{st['rows']} x {st['columns']} gradients, {human_bytes(st['stored_bytes'])} stored"
                  + (f" ({ratio:.2f}x)" if ratio else ""))]


def _param_rows(directory: Path) -> list[dict] | None:
    p = directory / "param_map.json"
    return _read_json(p)["param_map"] if p.is_file() else None


def pre_prune_table(manifest: dict) -> list[dict]:
    """Kept input dims per parameter tensor (map order), against the tensor's size (taken whole)."""
    i = _info(manifest)
    pruned = _param_rows(_out(manifest)) or []
    kept = i.get("kept_per_param") or {r["name"]: r["num_selected"] for r in pruned}
    rows = []
    for r in pruned:
        total, k = math.prod(r["shape"]), int(kept.get(r["name"], 0))
        rows.append({"parameter": r["name"], "shape": "x".join(map(str, r["shape"])), "kept": k,
                     "before": total, "kept_pct": round(100.0 * k / total, 3) if total else None})
    return rows


def _pre_prune(m: dict, exp: str) -> list[dict]:
    i, key = _info(m), artifact_key(exp, m["stage"])
    if not i.get("pruned"):
        md = _header(m, "Pre-pruning") + f"\npre-pruning is disabled: all {i.get('dim', 0):,} input dims are kept."
        return [_spec("markdown", key, md, "pre-pruning disabled")]
    rows = pre_prune_table(m)
    dim, full = int(i["dim"]), int(i.get("unpruned_dim") or sum(r["before"] for r in rows))
    desc = f"kept {dim:,} of {full:,} input dims ({100.0 * dim / full:.2f}%) over {len(rows)} tensors"
    return [_spec("table", key, rows, desc)]


def _train_seed(m: dict, exp: str) -> list[dict]:
    out, i = _out(m), _info(m)
    stats = _read_json(out / "stats.json") if (out / "stats.json").is_file() else {}
    best = stats.get("best") or i.get("best") or {}
    means = best.get("mean_by_class") or {}
    rows = [{"field": "seed", "value": i.get("seed")}, {"field": "steps", "value": stats.get("steps", i.get("steps"))},
            {"field": "evaluations", "value": len(stats.get("eval_steps") or [])},
            {"field": "best step", "value": best.get("step")},
            {"field": "best correlation", "value": best.get("correlation")},
            {"field": "mean encoded (+1 class)", "value": means.get("1")},
            {"field": "mean encoded (-1 class)", "value": means.get("-1")},
            {"field": "converged", "value": stats.get("converged", i.get("converged"))},
            {"field": "training time", "value": f"{float(stats.get('seconds') or i.get('seconds') or 0):.1f} s"}]
    md = (_header(m, f"Training, seed {i.get('seed')}") + "\n" + md_table(rows) + "\n\n"
          + md_image(out / "training_convergence.png", "training convergence"))
    return [_spec("markdown", artifact_key(exp, m["stage"], _seed_suffix(m)), md,
                  f"seed {i.get('seed')}: best r={fmt(best.get('correlation'))}")]


def seed_table(report: dict) -> list[dict]:
    """Every candidate seed's selection metrics; the winner marked."""
    rows = []
    for r in report["runs"]:
        means = r.get("mean_by_class") or {}
        rows.append({"seed": r["seed"], "selected": r["seed"] == report["best_seed"],
                     "convergent": r.get("converged"), "trained_converged": r.get("trained_converged"),
                     "best_step": r.get("best_step"), "best_correlation": r.get("best_correlation"),
                     "eval_correlation": r.get("eval_correlation"), "mean_pos": means.get("1"),
                     "mean_neg": means.get("-1"), "selection_score": r.get("selection_score")})
    return json_safe(rows)


def _select_seed(m: dict, exp: str) -> list[dict]:
    out = _out(m)
    report = _read_json(out / "seed_report.json")
    rows = seed_table(report)
    marked = [{**r, "selected": "★ winner" if r["selected"] else ""} for r in rows]
    md = (_header(m, "Seed selection")
          + f"\nbest seed **{report['best_seed']}** (strategy `{report['strategy']}`), "
            f"{report['convergent_count']} of {len(rows)} seeds convergent "
            f"(threshold {fmt(report.get('threshold'))}, mean threshold {fmt(report.get('mean_threshold'))}).\n\n"
          + md_table(marked) + "\n\n**Winner's training convergence**\n\n"
          + md_image(out / "training_convergence.png", "training convergence of the selected seed"))
    return [_spec("markdown", artifact_key(exp, m["stage"]), md, f"best seed {report['best_seed']}"),
            _spec("table", artifact_key(exp, m["stage"], "runs"), rows, "every trained seed; selected = winner")]


def _post_prune(m: dict, exp: str) -> list[dict]:
    i = _info(m)
    md = (_header(m, "Post-pruning") + f"\nGRADIEND input dims: {i.get('input_dim_before', 0):,} -> "
          f"{i.get('input_dim', 0):,} (config: `{json.dumps((m.get('config') or {}).get('post_prune'))}`)")
    return [_spec("markdown", artifact_key(exp, m["stage"]), md, f"{i.get('input_dim')} input dims kept")]


def _evaluate_encoder(m: dict, exp: str) -> list[dict]:
    out = _out(m)
    mt = _read_json(out / "metrics.json")
    subsets = [{"subset": k, **{c: mt[k].get(c) for c in ("correlation", "accuracy", "n")}}
               for k in ("all_data", "training_only", "target_classes_only") if k in mt]
    labels = list((mt.get("mean_by_class") or {}))
    per_label = [{"label": lab, **{s: mt.get(f"{s}_by_class", {}).get(lab) for s in
                                   ("n", "mean", "std", "min", "q1", "q3", "max")}} for lab in labels]
    groups = [{"group": g, "mean": v} for g, v in (mt.get("mean_by_class_name") or {}).items()]
    md = (_header(m, "Encoder evaluation")
          + f"\ncorrelation (label vs encoded, {_info(m).get('split', '?')} split): **{fmt(mt['correlation'])}** "
            f"over {mt.get('n')} rows\n\n" + md_table(subsets) + "\n\n**Encoded value per label**\n\n"
          + md_table(per_label)
          + ("\n\n**Mean encoded value per group**\n\n" + md_table(groups) if groups else "")
          + "\n\n" + md_image(out / "encoder_distributions.png", "encoder distributions"))
    return [_spec("markdown", artifact_key(exp, m["stage"]), md, f"encoder correlation {fmt(mt['correlation'])}")]


def grid_summary_rows(grid: dict) -> list[dict]:
    """One row per selection metric ("<C>" strengthens C, "<C>_weaken"): the selected cell vs the base."""
    rows = []
    for name, s in grid.get("summary", {}).items():
        value, base = s.get("value"), s.get("base_value")
        rows.append({"metric": name, "selected": "base model" if s.get("id") == "base" else "cell",
                     "feature_factor": s.get("feature_factor"), "learning_rate": s.get("learning_rate"),
                     "value": value, "base_value": base,
                     "change": None if value is None or base is None else value - base,
                     "lms": s.get("lms"), "base_lms": s.get("base_lms")})
    return json_safe(rows)


def _decoder_grid(m: dict, exp: str) -> list[dict]:
    import pandas as pd

    out = _out(m)
    grid = _read_json(out / "grid.json")
    cfg = grid.get("config") or {}
    plots = _info(m).get("plots") or {c: f"probability_shifts_{c}.png" for c in grid.get("feature_factors", {})}
    images = "\n\n".join(f"**Rewriting towards {c}** (feature factor {fmt(grid['feature_factors'].get(c))})\n\n"
                         + md_image(out / p, f"probability shifts {c}") for c, p in plots.items())
    md = (_header(m, "Decoder grid")
          + f"\nbase LMS **{fmt(grid.get('base_lms'))}**; rows per class: "
            f"{', '.join(f'{c}={n}' for c, n in (grid.get('rows_per_class') or {}).items())}; "
            f"selection policy `{cfg.get('policy')}`"
          + (f" (LMS >= {fmt(cfg.get('lms_ratio'))} x base)" if cfg.get("policy") == "lms_threshold" else "")
          + "\n\n**Selected cell per metric**\n\n" + md_table(grid_summary_rows(grid)) + "\n\n" + images)
    table = pd.read_parquet(out / "grid.parquet")
    cells = json_safe(table.to_dict(orient="records"))
    n = len(table) - int(table["is_base"].sum()) if "is_base" in table else len(table)
    desc = f"{n} grid cells + base, base LMS {fmt(grid.get('base_lms'))}"
    return [_spec("markdown", artifact_key(exp, m["stage"]), md, desc),
            _spec("table", artifact_key(exp, m["stage"], "cells"), cells, "every (feature factor, learning rate) cell")]


def rewrite_rows(examples: list[dict], target: str) -> list[dict]:
    b, a = f"p_{target}_base", f"p_{target}_rewritten"
    return json_safe([{"masked": e["masked"], "factual": e["factual"], "p_base": e.get(b), "p_rewritten": e.get(a),
                       "change": None if e.get(a) is None or e.get(b) is None else e[a] - e[b]} for e in examples])


def _rewrite(m: dict, exp: str) -> list[dict]:
    out, i = _out(m), _info(m)
    target, direction = i.get("target_class"), i.get("direction")
    sel = i.get("selected") or {}
    examples = _read_json(out / "examples.json") if (out / "examples.json").is_file() else []
    rows = rewrite_rows(examples, target)
    means = i.get("examples_mean") or {}
    model_dir = i.get("model_dir", str(out / "model"))
    md = (_header(m, f"Rewritten model ({direction} {target})")
          + f"\nsaved to `{model_dir}`\n\n"
          + md_table([{"feature factor": sel.get("feature_factor"), "learning rate": sel.get("learning_rate"),
                       "metric (base -> rewritten)": f"{fmt(sel.get('base_value'))} -> {fmt(sel.get('value'))}",
                       "LMS (base -> rewritten)": f"{fmt(sel.get('base_lms'))} -> {fmt(sel.get('lms'))}"}])
          + f"\n\n**P({target}) on held-out sentences, base vs rewritten** (mean "
            f"{fmt(means.get(f'p_{target}_base'))} -> {fmt(means.get(f'p_{target}_rewritten'))})\n\n"
          + md_table(rows) + _load_hint(i.get("pipeline_task")))
    return [_spec("markdown", artifact_key(exp, m["stage"]), md, f"{direction} {target}: {model_dir}")]


def _load_hint(task: str | None) -> str:
    if task:
        return f"\n\nload it with `transformers.pipeline(\"{task}\", model=...)`."
    return "\n\nload it with `transformers.pipeline(\"fill-mask\", model=...)` (`text-generation` for a causal LM)."


def _generic(m: dict, exp: str) -> list[dict]:
    scalars = [{"field": k, "value": v} for k, v in _info(m).items() if not isinstance(v, (dict, list))]
    return [_spec("markdown", artifact_key(exp, m["stage"]), _header(m, m["stage"]) + "\n" + md_table(scalars),
                  m["stage"])]


BUILDERS: dict[str, Callable[[dict, str], list[dict]]] = {
    "prepare-model": _prepare_model, "create-data": _create_data, "extract-gradients": _extract_gradients,
    "pre-prune": _pre_prune, "train-seed": _train_seed, "select-seed": _select_seed, "post-prune": _post_prune,
    "evaluate-encoder": _evaluate_encoder, "decoder-grid": _decoder_grid, "rewrite": _rewrite,
}


def stage_artifact_content(manifest: dict, experiment: str) -> list[dict]:
    """Artifact specs [{kind, key, content, description}] of one stage output (reads its files)."""
    return BUILDERS.get(manifest["stage"], _generic)(manifest, experiment)


# ----------------------------------------------------------------------------- run report

def _stage_order(summary: dict, manifests: dict[str, dict]) -> list[str]:
    return list(dict.fromkeys(list((summary.get("stages") or {})) + list(manifests)))


def _headline(summary: dict) -> list[dict]:
    mt = summary.get("metrics") or {}
    rows = []
    if "encoder_correlation" in mt:
        rows.append({"metric": f"encoder correlation ({mt.get('encoder_split', '?')} split)",
                     "value": fmt(mt["encoder_correlation"])})
    if "best_seed" in mt:
        rows.append({"metric": "best seed",
                     "value": f"{mt['best_seed']} ({mt.get('converged_seeds', '?')} convergent)"})
    sel = mt.get("selected") or {}
    if sel:
        rows.append({"metric": f"rewrite: {mt.get('direction')} {mt.get('target_class')}",
                     "value": f"{fmt(sel.get('base_value'))} -> {fmt(sel.get('value'))} (feature factor "
                              f"{fmt(sel.get('feature_factor'))}, lr {fmt(sel.get('learning_rate'))})"})
        rows.append({"metric": "LMS (base -> rewritten)",
                     "value": f"{fmt(sel.get('base_lms'))} -> {fmt(sel.get('lms'))}"})
    if summary.get("rewritten_model"):
        rows.append({"metric": "rewritten model", "value": f"`{summary['rewritten_model']}`"})
    return rows


def _link(key: str, ui_url: str | None) -> str:
    base = (ui_url or "").rstrip("/")
    return f"[`{key}`]({base}/artifacts/key/{key})"


def run_report_markdown(summary: dict, manifests: dict[str, dict], experiment: str,
                        ui_url: str | None = None) -> str:
    """The run report: every stage (key, reused/ran, seconds, its artifacts), headline metrics, artifact list."""
    stages = summary.get("stages") or {}
    order = _stage_order(summary, manifests)
    rows, all_keys = [], []
    for sid in order:
        st, m = stages.get(sid) or {}, manifests.get(sid) or {}
        cached = st.get("cached", m.get("cached"))
        keys = artifact_keys(m, experiment) if "stage" in m else []
        all_keys += keys
        rows.append({"stage": sid, "key": f"`{st.get('key', m.get('key', '?'))}`",
                     "status": "reused" if cached else "ran",
                     "seconds": 0.0 if cached else float(st.get("seconds", m.get("seconds", 0.0)) or 0.0),
                     "artifacts": ", ".join(f"`{k}`" for k in keys)})
    n_cached = sum(r["status"] == "reused" for r in rows)
    md = [f"# gradiend-flow run: {experiment}", "",
          f"{len(rows)} stages ({n_cached} reused, {len(rows) - n_cached} ran) · total "
          f"{float(summary.get('seconds') or 0):.1f} s · store `{summary.get('store', '?')}`", "",
          "## Headline", "", md_table(_headline(summary)), "", "## Stages", "", md_table(rows), "",
          "## Artifacts", ""]
    md += [f"- {_link(k, ui_url)}" for k in all_keys + [artifact_key(experiment, "report")]]
    return "\n".join(md)


# ----------------------------------------------------------------------------- publishing (Prefect)

def _logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # no run context: plain logging
        return log


def _create(spec: dict) -> None:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    if spec["kind"] == "table":
        create_table_artifact(table=spec["content"], key=spec["key"], description=spec["description"])
    else:
        create_markdown_artifact(markdown=spec["content"], key=spec["key"], description=spec["description"])


def publish_specs(specs: list[dict]) -> list[str]:
    """Create each artifact; a failure is logged and skipped. Returns the keys created."""
    done = []
    for spec in specs:
        try:
            _create(spec)
            done.append(spec["key"])
        except Exception as e:  # an artifact must never fail the stage that produced the data
            _logger().warning("could not create artifact %s: %s", spec["key"], e)
    return done


def publish_stage_artifacts(manifest: dict, experiment: str) -> list[str]:
    """Create this stage's UI artifacts (inside a Prefect task or flow run); returns their keys."""
    try:
        specs = stage_artifact_content(manifest, experiment)
    except Exception as e:
        _logger().warning("no artifacts for %s/%s: %s", manifest.get("stage"), manifest.get("key"), e)
        return []
    return publish_specs(specs)


def _ui_url() -> str | None:
    try:
        from prefect.settings import get_current_settings

        return get_current_settings().ui_url
    except Exception:
        return None


def publish_run_report(summary: dict, manifests: dict[str, dict], experiment: str) -> str:
    """Create the run report artifact (key `<slug>-report`); returns its key ("" if it failed)."""
    key = artifact_key(experiment, "report")
    try:
        md = run_report_markdown(summary, manifests, experiment, ui_url=_ui_url())
    except Exception as e:
        _logger().warning("could not build the run report: %s", e)
        return ""
    done = publish_specs([_spec("markdown", key, md, f"gradiend-flow run report: {experiment}")])
    return done[0] if done else ""
