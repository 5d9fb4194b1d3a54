"""compare (suites only): the comparison of every pair's selected GRADIEND (post-prune, else select-seed)
and its evaluate-encoder table: similarity matrices (ungrouped, per layer, per component), top-k tables
and cross-encoding matrices (gradiend_core.compare), stored as parquet tables + summary.json."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..checkpoint import load_gradiend
from ..compare import compare_gradiends, encoding_table, write_comparison
from ..manifests import out_path
from ..reports import compare as report
from ..reports.markdown import fan_suffix
from ..suite import CompareSection, suite_pairs
from .declaration import Report, Stage, needs, section_dict

MODEL, ENCODER = "model", "encoder"  # fan-in inputs: f"{MODEL}_{pair id}", f"{ENCODER}_{pair id}"


def config_slice(cfg) -> dict:
    """The comparison settings and the pairs in suite order (the tables' order)."""
    return {"compare": section_dict(cfg.suite.compare), "pairs": list(suite_pairs(cfg))}


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pairs = conf["pairs"]
    progress(0.1, f"loading {len(pairs)} GRADIENDs")
    gradiends = {pid: load_gradiend(out_path(inputs[f"{MODEL}_{pid}"]) / "model") for pid in pairs}
    encoders = {pid: inputs[f"{ENCODER}_{pid}"] for pid in pairs}
    encoded = {pid: pd.read_parquet(out_path(m) / "encoded.parquet") for pid, m in encoders.items()}
    split = encoders[pairs[0]]["info"].get("split", "test")
    progress(0.2, "comparing")
    c = compare_gradiends(gradiends, CompareSection(**conf["compare"]).config(), encoding_table(encoded, split),
                          progress=lambda f, msg: progress(0.2 + 0.75 * f, msg))
    write_comparison(c, out)
    used = {pid: {role: _used(inputs[f"{role}_{pid}"]) for role in (MODEL, ENCODER)} for pid in pairs}
    return {"pairs": used, "split": split, "rows": c.summary["rows"], "kept_dims": c.summary["kept_dims"]}


def _used(m: dict) -> dict:
    """An input's stage, key and artifact key suffix (the report links to its artifacts)."""
    return {"stage": m["stage"], "key": m["key"], "suffix": fan_suffix(m)}


def in_suite(cfg) -> bool:
    """Only a suite's plan has the comparison (stages/plan.suite_plan adds it with every pair's inputs)."""
    return getattr(cfg, "suite", None) is not None


STAGE = Stage(name="compare", version="1", sections=("suite",), build=build, conf=config_slice,
              inputs=(needs(MODEL, "post-prune", "select-seed", every=True),
                      needs(ENCODER, "evaluate-encoder", every=True)),
              enabled=in_suite,
              report=Report(artifacts=report.artifacts, draw=report.draw, code=report.CODE, extra=report.EXTRA))
