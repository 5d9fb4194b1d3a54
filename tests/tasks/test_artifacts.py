"""UI artifacts: reports drawn and content built from real stage outputs in a tmp store (gradiend_core.reports),
plus one publish through Prefect (tasks.artifacts)."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gradiend_core.io import atomic_write_json
from gradiend_core.reports import images as I
from gradiend_core.reports import markdown as M
from gradiend_core.reports.extract_gradients import extraction_stats
from gradiend_core.stages.registry import stage
from gradiend_core.stages.runner import run_report
from gradiend_core.store import LocalStore, stage_key
from tasks import artifacts as A

EXP = "Pronoun Number (tiny BERT)"
SLUG = "pronoun-number-tiny-bert"
CLASSES = [["3SG", ["he", "she"]], ["3PL", ["they"]]]  # ordered pairs, as create-data records them
URI_RE = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


# ----------------------------------------------------------------------------- a store with every stage

def publish(store: LocalStore, stage: str, build, info: dict, upstream: dict | None = None,
            seconds: float = 1.5, config: dict | None = None, seed: int | None = None) -> dict:
    """Run `build(dir)` in a staging dir and publish it like the stage runner does."""
    conf = {**(config or {}), **({"seed": seed} if seed is not None else {})}
    key = stage_key(stage, "1", conf, upstream or {})
    staging = store.staging(stage, key)
    build(staging)
    m = store.publish(stage, key, staging, {"version": "1", "config": conf, "upstream": upstream or {},
                                            "seconds": seconds, "info": info})
    m["cached"] = False
    return m


def training_frame() -> pd.DataFrame:
    """he: 3 train + 1 test, she: 2 train, they: 4 train + 1 validation."""
    spec = [("he", "3SG", "train")] * 3 + [("he", "3SG", "test"), ("she", "3SG", "train"), ("she", "3SG", "train")]
    spec += [("they", "3PL", "train")] * 4 + [("they", "3PL", "validation")]
    rows = []
    for i, (w, c, split) in enumerate(spec):
        other = "3PL" if c == "3SG" else "3SG"
        alt = "they" if c == "3SG" else ("he" if i % 2 else "she")
        rows.append({"row_id": i, "text": f"Yesterday {w} walked home {i}.",
                     "masked": f"Yesterday [MASK] walked home {i}.",
                     "factual": w, "alternative": alt, "factual_class": c, "alternative_class": other,
                     "transition": f"{c}->{other}", "label": 1 if c == "3SG" else -1, "split": split,
                     "target_word": w, "n_masks": 1})
    return pd.DataFrame(rows)


def stats_for(seed: int, final_corr: float) -> dict:
    steps = [0, 4, 8, 12]
    corr = [0.05 + (final_corr - 0.05) * k / 3 for k in range(4)]
    pos = [c * 0.9 for c in corr]
    return {"eval_steps": steps, "correlation": corr, "mean_by_class": {"1": pos, "-1": [-p for p in pos]},
            "loss": list(np.linspace(1.0, 0.1, 12)), "encoder_norm": [1.0] * 12, "decoder_norm": [1.0] * 12,
            "best": {"step": 12, "correlation": corr[-1], "mean_by_class": {"1": pos[-1], "-1": -pos[-1]}},
            "converged": abs(corr[-1]) >= 0.5, "convergence": {"improved_over_step0": True},
            "normalized_flips": [], "seconds": 0.4, "steps": 12, "seed": seed}


def build_store(root) -> dict[str, dict]:
    from safetensors.torch import save_file

    from gradiend_core.data.creation import write_dataset
    from gradiend_core.decoder_eval import DecoderGridConfig, grid_result, prob_column
    from gradiend_core.stages.grid_parts import write_outputs
    from gradiend_core.grad_store import GradientStore, compact, create_store, mean_abs_importance, topk_indices
    from gradiend_core.metrics import encoder_metrics
    from gradiend_core.param_map import ParamMap, ParamSpec
    from gradiend_core.param_map import save_param_map as write_param_map
    from gradiend_core.pruning import kept_per_param
    from gradiend_core.seeds import select_seed

    store, ms = LocalStore(root), {}
    ms["prepare-model"] = publish(store, "prepare-model", lambda d: None, {
        "name_or_path": "tiny-bert", "source_dir": "/m", "model_dir": "/m", "digest": "ab" * 32,
        "objective": "mlm", "head": None, "n_parameters": 123456})

    training = training_frame()
    neutral = pd.DataFrame({"row_id": [0, 1, 2], "text": ["The sun rose.", "A cat slept.", "Rain fell."]})
    ms["create-data"] = publish(store, "create-data", lambda d: write_dataset(d, training, neutral),
                                {"classes": CLASSES, "labels": {"3SG": 1, "3PL": -1}})

    pmap = ParamMap([ParamSpec("enc.weight", (10, 20)), ParamSpec("enc.bias", (20,)), ParamSpec("dec.weight", (5, 10))])
    n_rows, rng = 16, np.random.default_rng(0)

    def extract(d):
        g = create_store(d / "gradients.zarr", n_rows, pmap.input_dim, "float16", 8, "blosc-zstd")
        for kind in ("factual", "alternative"):
            g[kind][:] = (rng.standard_normal((n_rows, pmap.input_dim)) * 1e-3).astype(np.float16)
        rows = pd.DataFrame({"store_row": np.arange(n_rows), "kind": "training", "split": "train",
                             "label": np.where(np.arange(n_rows) % 2, 1, -1).astype("int8"),
                             "factual_class": np.where(np.arange(n_rows) % 2, "3SG", "3PL")})
        rows.to_parquet(d / "rows.parquet", index=False)
        write_param_map(d, pmap)

    ms["extract-gradients"] = publish(store, "extract-gradients", extract, {
        "n_rows": n_rows, "dim": pmap.input_dim, "dtype": "float16", "n_params": 3,
        "splits": {"train": n_rows}, "base": {"name_or_path": "tiny-bert", "digest": "ab", "objective": "mlm"},
        "classes": CLASSES}, upstream={"model": ms["prepare-model"]["key"], "data": ms["create-data"]["key"]},
        seconds=4.0)

    ext_dir = ms["extract-gradients"]["path"]
    src = GradientStore(ext_dir)
    keep = topk_indices(mean_abs_importance(src, list(range(8)), "diff"), 40)
    pinfo = {"dim": 40, "pruned": True, "unpruned_dim": pmap.input_dim, "sample_rows": list(range(8)),
             "kept_per_param": kept_per_param(pmap, keep)}

    def prune(d):
        save_file({"keep": keep.contiguous()}, str(d / "keep.safetensors"))
        write_param_map(d, pmap.select(keep))
        compact(src, d, keep)

    ms["pre-prune"] = publish(store, "pre-prune", prune, {**pinfo, "store_dir": "x"},
                              upstream={"extract": ms["extract-gradients"]["key"]})

    runs = []
    for seed, corr in ((0, 0.3), (1, 0.8), (2, 0.7)):
        st = stats_for(seed, corr)

        def train(d, st=st):
            atomic_write_json(d / "stats.json", st)
            (d / "model").mkdir()
            (d / "model" / "model.safetensors").write_bytes(b"weights")

        ms[f"train-seed-{seed}"] = publish(store, "train-seed", train, {
            "seed": seed, "converged": st["converged"], "best": st["best"], "steps": 12, "classes": ["3SG", "3PL"]},
            upstream={"pre_prune": ms["pre-prune"]["key"]}, seed=seed)
        runs.append({"seed": seed, "stats": st})
    report = select_seed(runs)

    def select(d):
        atomic_write_json(d / "seed_report.json", report)
        best = ms[f"train-seed-{report['best_seed']}"]["path"]
        shutil.copy2(Path(best) / "stats.json", d / "stats.json")

    ms["select-seed"] = publish(store, "select-seed", select, {
        "best_seed": report["best_seed"], "strategy": report["strategy"],
        "convergent_count": report["convergent_count"], "n_seeds": 3, "classes": ["3SG", "3PL"]},
        upstream={f"seed_{s}": ms[f"train-seed-{s}"]["key"] for s in range(3)})

    enc = np.concatenate([rng.normal(0.8, 0.1, 6), rng.normal(-0.7, 0.1, 6), rng.normal(0, 0.2, 3)])
    labels = np.array([1.0] * 6 + [-1.0] * 6 + [0.0] * 3)
    types = ["training"] * 12 + ["neutral_dataset"] * 3
    groups = ["3SG"] * 6 + ["3PL"] * 6 + ["neutral (dataset)"] * 3
    metrics = encoder_metrics(enc, labels, types=types, classes=groups)

    def evaluate(d):
        words = ["he", "she", "it"] * 2 + ["they"] * 6 + ["sun", "cat", "rain"]
        df = pd.DataFrame({"encoded": enc, "label": labels, "type": types, "group": groups, "split": "test",
                           "source_class": [g if "neutral" not in g else "neutral" for g in groups],
                           "source_word": words})
        df.to_parquet(d / "encoded.parquet", index=False)
        atomic_write_json(d / "metrics.json", metrics)

    ms["evaluate-encoder"] = publish(store, "evaluate-encoder", evaluate, {
        "correlation": metrics["correlation"], "n_rows": 15, "split": "test"},
        upstream={"model": ms["select-seed"]["key"]})

    def record(ff, lr, lms, p33, p23, p32, p22):  # P(3SG|3SG rows), P(3PL|3SG rows), P(3SG|3PL), P(3PL|3PL)
        return {"is_base": lr == 0.0, "feature_factor": ff, "learning_rate": lr, "lms": lms,
                prob_column("3SG", "3SG"): p33, prob_column("3PL", "3SG"): p23,
                prob_column("3SG", "3PL"): p32, prob_column("3PL", "3PL"): p22,
                "lms_values": [lms] * 10, "row_probs": [[p33, p23]] * 4 + [[p32, p22]] * 4}

    records = [record(0.0, 0.0, 0.5, 0.6, 0.2, 0.1, 0.7)]
    for ff in (-1.0, 1.0):
        for lr in (0.01, 0.1, 1.0):
            shift = ff * lr * 0.3
            records.append(record(ff, lr, 0.5 - lr * 0.05, 0.6 + shift, 0.2 - shift, 0.1 + shift / 2, 0.7 - shift))
    cfg = DecoderGridConfig(learning_rates=[0.01, 0.1, 1.0], lms_ratio=0.98, lms="accuracy")
    layout = {"classes": ["3SG", "3PL"], "dataset_classes": ["3SG", "3PL"], "rows_per_class": {"3SG": 4, "3PL": 4},
              "feature_factors": {"3SG": 1.0, "3PL": -1.0}, "row_dataset": [0] * 4 + [1] * 4, "objective": "mlm"}
    grid = grid_result(records, layout, cfg)

    def decode(d):
        write_outputs(d, grid)

    ms["decoder-grid"] = publish(store, "decoder-grid", decode, {
        "summary": grid.summary, "base_lms": 0.5, "n_cells": len(records), "n_lms_positions": 10},
        upstream={"model": ms["select-seed"]["key"]})

    examples = [{"masked": f"Then [MASK] | left {i}.", "factual": "they", "p_3SG_base": 0.1 + i / 100,
                 "p_3SG_rewritten": 0.3 + i / 50} for i in range(4)]
    chosen = grid.summary["3SG"]

    def rewrite(d):
        atomic_write_json(d / "examples.json", examples)
        (d / "model").mkdir()
        (d / "model" / "config.json").write_text("{}")

    ms["rewrite"] = publish(store, "rewrite", rewrite, {
        "target_class": "3SG", "direction": "strengthen", "selected": chosen,
        "examples_mean": {"p_3SG_base": float(np.mean([e["p_3SG_base"] for e in examples])),
                          "p_3SG_rewritten": float(np.mean([e["p_3SG_rewritten"] for e in examples]))}},
        upstream={"grid": ms["decoder-grid"]["key"]})
    ms["rewrite"]["info"]["model_dir"] = ms["rewrite"]["path"] + "/model"
    return ms


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def manifests(store_root) -> dict[str, dict]:
    return build_store(store_root)


@pytest.fixture(scope="module")
def reports(store_root, manifests) -> dict[str, dict | None]:
    """Each stage's report output: the plots drawn from its stored results (train-seed 0 only: slow)."""
    store = LocalStore(store_root)
    return {sid: run_report(store, stage(m["stage"]), m) for sid, m in manifests.items()
            if sid not in ("train-seed-1", "train-seed-2")}


@pytest.fixture(scope="module")
def contents(manifests, reports) -> dict[str, list[dict]]:
    return {sid: A.stage_artifact_content(stage(m["stage"]), m, reports.get(sid), EXP) for sid, m in manifests.items()}


def by_key(contents, key) -> dict:
    hits = [s for specs in contents.values() for s in specs if s["key"] == key]
    assert len(hits) == 1, key
    return hits[0]


def md_rows(md: str, first_cell: str) -> list[list[str]]:
    """Cells of markdown table lines starting with `| first_cell |`."""
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in md.splitlines()
            if line.startswith(f"| {first_cell} |")]


# ----------------------------------------------------------------------------- keys and images

def test_slugify_and_keys_are_valid_prefect_keys():
    assert M.slugify(EXP) == SLUG
    assert M.slugify("  --Gender/De_v2!! ") == "gender-de-v2"
    assert M.slugify("") == "experiment" and M.slugify("///") == "experiment"
    assert len(M.slugify("x" * 500)) == M.MAX_SLUG_LEN
    assert M.artifact_key(EXP, "train-seed", "3") == f"{SLUG}-train-seed-3"
    m = {"stage": "train-seed", "config": {"seed": -1}}
    assert M.artifact_keys(m, EXP) != M.artifact_keys({"stage": "train-seed", "config": {"seed": 1}}, EXP)


def test_every_key_is_a_valid_unique_slug_and_matches_artifact_keys(manifests, contents):
    keys = [s["key"] for specs in contents.values() for s in specs]
    assert len(keys) == len(set(keys))
    for sid, specs in contents.items():
        assert [s["key"] for s in specs] == A.stage_keys(stage(manifests[sid]["stage"]), manifests[sid], EXP)
        for s in specs:
            assert M.KEY_RE.match(s["key"]) and s["key"].startswith(SLUG + "-" + manifests[sid]["stage"])
            assert s["kind"] in ("markdown", "table") and s["description"]
            if s["kind"] == "table":
                json.dumps(s["content"], allow_nan=False)  # strict JSON: NaN would break the UI


def png(w: int, h: int, noise: bool) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if noise else np.full((h, w, 3), 200, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def decode_uri(uri: str) -> bytes:
    return base64.b64decode(URI_RE.fullmatch(uri).group(1))


def test_small_png_is_inlined_unchanged_and_large_png_is_shrunk(tmp_path):
    from PIL import Image

    small, big = tmp_path / "small.png", tmp_path / "big.png"
    small.write_bytes(png(50, 40, noise=False))
    big.write_bytes(png(600, 450, noise=True))  # ~0.8 MB of incompressible pixels
    assert big.stat().st_size > 5 * I.MAX_IMAGE_BYTES
    assert decode_uri(I.png_data_uri(small)) == small.read_bytes()
    data = decode_uri(I.png_data_uri(big))
    assert len(data) <= I.MAX_IMAGE_BYTES
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.width < 600 and abs(img.width / img.height - 600 / 450) < 0.02
    assert I.png_data_uri(tmp_path / "missing.png") is None
    assert "not available" in I.md_image(tmp_path / "missing.png", "x")


def test_every_stage_plot_is_inlined_under_the_limit(contents):
    expect_images = {"train-seed-0": 1, "select-seed": 1, "evaluate-encoder": 3, "decoder-grid": 2}
    for sid, n in expect_images.items():
        md = contents[sid][0]["content"]
        uris = URI_RE.findall(md)
        assert len(uris) == n, sid
        for u in uris:
            data = base64.b64decode(u)
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) <= I.MAX_IMAGE_BYTES
        assert "not available" not in md


# ----------------------------------------------------------------------------- per stage content

def test_create_data_table_counts_rows_per_class_word_and_split(contents):
    table = by_key(contents, f"{SLUG}-create-data-rows")["content"]
    got = {(r["class"], r["target_word"]): (r["train"], r["validation"], r["test"], r["total"]) for r in table}
    df = training_frame()
    want = {}
    for (c, w), g in df.groupby(["factual_class", "target_word"]):
        n = [int((g["split"] == s).sum()) for s in ("train", "validation", "test")]
        want[(c, w)] = (*n, sum(n))
    assert got == want
    assert [r["class"] for r in table] == ["3SG", "3SG", "3PL"]  # config order, not alphabetical
    md = by_key(contents, f"{SLUG}-create-data")["content"]
    assert f"**{len(df)}** training rows" in md and "**3** neutral" in md
    assert md_rows(md, "3SG")[0][1:] == ["5", "0", "1", "6"]  # train, validation, test, total


def test_extraction_summary_reports_size_ratio_and_throughput(manifests, contents):
    m = manifests["extract-gradients"]
    st = extraction_stats(m)
    on_disk = sum(p.stat().st_size for p in (M.out(m) / "gradients.zarr").rglob("*") if p.is_file())
    assert st["stored_bytes"] == on_disk > 0
    assert st["arrays"] == ["alternative", "factual"]
    assert st["raw_bytes"] == 2 * 16 * 270 * 2 + 2 * 16 * 4  # + the rows' float32 scales
    assert st["compression_ratio"] == pytest.approx(st["raw_bytes"] / on_disk)
    assert st["rows_per_second"] == pytest.approx(16 / 4.0)
    md = contents["extract-gradients"][0]["content"]
    assert "4.00 rows/s" in md and f"{st['compression_ratio']:.4g}" in md and "270" in md


def test_pre_prune_table_matches_kept_indices(manifests, contents):
    from safetensors.torch import load_file

    keep = load_file(str(M.out(manifests["pre-prune"]) / "keep.safetensors"))["keep"]
    spec = contents["pre-prune"][0]
    assert spec["kind"] == "table" and "kept 40 of 270" in spec["description"]
    rows = {r["parameter"]: r for r in spec["content"]}
    assert list(rows) == ["enc.weight", "enc.bias", "dec.weight"]
    bounds = {"enc.weight": (0, 200), "enc.bias": (200, 220), "dec.weight": (220, 270)}
    for name, (a, b) in bounds.items():
        assert rows[name]["kept"] == int(((keep >= a) & (keep < b)).sum())
        assert rows[name]["before"] == b - a
        assert rows[name]["kept_pct"] == pytest.approx(100 * rows[name]["kept"] / (b - a), abs=1e-3)
    assert sum(r["kept"] for r in rows.values()) == 40
    assert rows["enc.weight"]["shape"] == "10x20"


def test_pre_prune_disabled_gives_markdown():
    m = {"stage": "pre-prune", "key": "k", "path": "/nowhere", "info": {"pruned": False, "dim": 270}}
    (spec,) = A.stage_artifact_content(stage("pre-prune"), m, None, EXP)
    assert spec["kind"] == "markdown" and "disabled" in spec["content"] and "270" in spec["content"]


def test_seed_table_marks_the_winner(manifests, contents):
    report = json.loads((M.out(manifests["select-seed"]) / "seed_report.json").read_text())
    table = by_key(contents, f"{SLUG}-select-seed-runs")["content"]
    assert [r["seed"] for r in table] == [0, 1, 2]
    assert [r["seed"] for r in table if r["selected"]] == [report["best_seed"]] == [1]  # highest correlation
    assert [r["convergent"] for r in table] == [False, True, True]
    assert table[1]["best_correlation"] == pytest.approx(0.8)
    md = by_key(contents, f"{SLUG}-select-seed")["content"]
    winner = [r for r in md_rows(md, "1")]
    assert len(winner) == 1 and winner[0][1] == "★ winner"
    assert all(r[1] == "" for s in ("0", "2") for r in md_rows(md, s))
    assert "train-seed" in contents["train-seed-2"][0]["key"] and "0.7" in contents["train-seed-2"][0]["content"]


def test_encoder_markdown_has_metrics_and_plot(manifests, contents):
    metrics = json.loads((M.out(manifests["evaluate-encoder"]) / "metrics.json").read_text())
    md = contents["evaluate-encoder"][0]["content"]
    assert f"**{metrics['correlation']:.4g}**" in md
    (row,) = md_rows(md, "target_classes_only")
    block = metrics["target_classes_only"]
    assert row[1:] == [f"{block['correlation']:.4g}", f"{block['accuracy']:.4g}", str(block["n"])]
    assert md_rows(md, "neutral (dataset)")  # per-group means listed


def test_decoder_grid_table_and_selected_cells(manifests, contents):
    grid = json.loads((M.out(manifests["decoder-grid"]) / "grid.json").read_text())
    cells = by_key(contents, f"{SLUG}-decoder-grid-cells")["content"]
    assert len(cells) == 7 and sum(c["is_base"] for c in cells) == 1
    assert {(c["feature_factor"], c["learning_rate"]) for c in cells if not c["is_base"]} == {
        (f, lr) for f in (-1.0, 1.0) for lr in (0.01, 0.1, 1.0)}
    md = by_key(contents, f"{SLUG}-decoder-grid")["content"]
    for name, s in grid["summary"].items():
        (row,) = md_rows(md, name)
        assert row[2:4] == [f"{s['feature_factor']:.4g}", f"{s['learning_rate']:.4g}"]
        change, lo, hi = (float(x.strip("[],")) for x in row[6].split())  # "+0.03 [+0.03, +0.03]"
        assert change == pytest.approx(s["value"] - s["base_value"], rel=1e-2, abs=1e-6)
        assert lo <= change <= hi
    # lms_threshold 0.98 x 0.5: only lr <= 0.1 keeps LMS >= 0.49, and the larger shift wins
    assert grid["summary"]["3SG"]["learning_rate"] == 0.1


def test_rewrite_markdown_lists_base_vs_rewritten(manifests, contents):
    md = contents["rewrite"][0]["content"]
    assert manifests["rewrite"]["info"]["model_dir"] in md
    rows = [r for r in md_rows(md, "masked")] + [line for line in md.splitlines() if "[MASK]" in line]
    assert len(rows) == 1 + 4
    first = next(line for line in md.splitlines() if "left 0." in line)
    assert "\\|" in first  # a pipe inside a sentence is escaped, not a column break
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", first)[1:-1]]
    assert [float(c) for c in cells[2:5]] == pytest.approx([0.1, 0.3, 0.2])


def test_unknown_stage_gets_a_generic_summary():
    from types import SimpleNamespace

    m = {"stage": "new-stage", "key": "k", "path": "/x", "info": {"n": 3}}
    (spec,) = A.stage_artifact_content(SimpleNamespace(report=None), m, None, EXP)
    assert spec["key"] == f"{SLUG}-new-stage" and md_rows(spec["content"], "n")[0][1] == "3"


# ----------------------------------------------------------------------------- run report

def summary_for(manifests) -> dict:
    return {"store": "/tmp/store", "seconds": 12.5,
            "stages": {sid: {"key": m["key"], "cached": sid == "prepare-model", "seconds": m["seconds"]}
                       for sid, m in manifests.items()},
            "metrics": {"encoder_correlation": 0.91, "encoder_split": "test", "best_seed": 1, "converged_seeds": 2,
                        "target_class": "3SG", "direction": "strengthen",
                        "selected": {"feature_factor": 1.0, "learning_rate": 0.1, "value": 0.25, "base_value": 0.1,
                                     "lms": 0.495, "base_lms": 0.5}},
            "rewritten_model": "/tmp/store/rewrite/x/model"}


def keys_of(manifests) -> dict[str, list[str]]:
    return {sid: A.stage_keys(stage(m["stage"]), m, EXP) for sid, m in manifests.items()}


def test_run_report_lists_every_stage_and_artifact(manifests, contents):
    from gradiend_core.reports.run import run_report_markdown

    md = run_report_markdown(summary_for(manifests), manifests, keys_of(manifests), EXP,
                             ui_url="http://127.0.0.1:4200")
    for sid, m in manifests.items():
        (row,) = md_rows(md, sid)
        assert row[1] == f"`{m['key']}`"
        assert row[2] == ("reused" if sid == "prepare-model" else "ran")
        for s in contents[sid]:
            assert f"`{s['key']}`" in row[4]
            assert f"(http://127.0.0.1:4200/artifacts/key/{s['key']})" in md
    assert f"{len(manifests)} stages (1 reused, {len(manifests) - 1} ran)" in md
    assert "0.91" in md and "0.1 -> 0.25" in md and "/tmp/store/rewrite/x/model" in md
    assert f"{SLUG}-report" in md


# ----------------------------------------------------------------------------- through Prefect

@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def test_publish_inside_a_flow_and_read_back(prefect_api, manifests):
    import asyncio

    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    chosen = ("create-data", "select-seed", "rewrite")
    broken = {"stage": "select-seed", "key": "k", "path": "/nowhere", "info": {}}

    @flow
    def publish_all() -> dict:
        keys = {sid: A.publish_stage_artifacts(stage(manifests[sid]["stage"]), manifests[sid], None, EXP)
                for sid in chosen}
        # missing files: warns, creates nothing
        keys["broken"] = A.publish_stage_artifacts(stage("select-seed"), broken, None, EXP)
        keys["report"] = A.publish_run_report(summary_for(manifests), manifests, keys_of(manifests), EXP)
        return keys

    keys = publish_all()
    assert keys["broken"] == [] and keys["report"] == f"{SLUG}-report"
    for sid in chosen:
        assert keys[sid] == A.stage_keys(stage(manifests[sid]["stage"]), manifests[sid], EXP)

    async def read():
        async with get_client() as c:
            return await c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=SLUG)))

    stored = {a.key: a for a in asyncio.run(read())}
    want = {f"{SLUG}-create-data": "markdown", f"{SLUG}-create-data-rows": "table",
            f"{SLUG}-select-seed": "markdown", f"{SLUG}-select-seed-runs": "table",
            f"{SLUG}-rewrite": "markdown", f"{SLUG}-report": "markdown"}
    assert {k: a.type for k, a in stored.items()} == want
    assert "Pronoun Number (tiny BERT)" in stored[f"{SLUG}-report"].data
    assert "training convergence" in stored[f"{SLUG}-select-seed"].data
    table = json.loads(stored[f"{SLUG}-select-seed-runs"].data)
    assert [r["seed"] for r in table if r["selected"]] == [1]
