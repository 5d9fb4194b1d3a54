"""The whole comparison of several GRADIENDs in one call, as tidy tables (parquet-ready) and a JSON-able
summary; what a suite stage stores and what plots_compare draws from.

Tables: similarity (similarity.SIMILARITY_COLUMNS: every measure ungrouped, group_by "none", then per
layer and per component), topk (topk.TOPK_COLUMNS, every part in `topk_parts`), and with an encoding
table: cross_encoding, pairwise_encoding, anchor_aligned (cross_encoding.py).

Deviation from the reference: one GRADIEND per id (a suite stage passes the selected seed of each pair);
the reference also scores every seed pair of lists of seed models and aggregates them (D §6).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd


from gradiend_core.compare import cross_encoding as xe
from gradiend_core.compare.layout import common_layout
from gradiend_core.compare.measures import MEASURES, NEEDS_TOPK, default_part
from gradiend_core.compare.similarity import all_vectors, as_matrix, grouped_similarity, similarity_matrix
from gradiend_core.compare.topk import topk_weights
from gradiend_core.gradiend import Gradiend
from gradiend_core.io import atomic_write_bytes, atomic_write_json
from gradiend_core.model import PARTS

Progress = Callable[[float, str], None]  # (fraction done, message)


@dataclass(frozen=True)
class CompareConfig:
    """measures: the similarity measures; topk: the top-k of topk_overlap, mass_overlap and the top-k
    table (int or fraction); similarity_topk: an optional top-k restriction of cosine / spearman (None:
    every kept dim); value: topk_overlap's intersection | intersection_frac; group_by: the groupings."""

    measures: tuple[str, ...] = MEASURES
    topk: int | float = 1000
    similarity_topk: int | float | None = None
    value: str = "intersection_frac"
    group_by: tuple[str, ...] = ("layer", "component")
    topk_parts: tuple[str, ...] = PARTS


@dataclass
class Comparison:
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def _measure_topk(cfg: CompareConfig, name: str) -> int | float | None:
    return cfg.topk if name in NEEDS_TOPK else cfg.similarity_topk


def similarity_tables(gradiends: Mapping[str, Gradiend], cfg: CompareConfig,
                      progress: Progress | None = None) -> pd.DataFrame:
    """Every configured measure, ungrouped and per grouping, in one tidy table; `progress(fraction, message)`
    after each (grouping, measure) matrix."""
    layout = common_layout(gradiends)
    vectors = {p: all_vectors(gradiends, p, layout) for p in {default_part(m) for m in cfg.measures}}
    jobs = [(by, m) for by in (None, *cfg.group_by) for m in cfg.measures]
    frames = []
    for i, (by, m) in enumerate(jobs):
        kw = dict(topk=_measure_topk(cfg, m), value=cfg.value, vectors=vectors[default_part(m)])
        frames.append(similarity_matrix(gradiends, m, **kw) if by is None
                      else grouped_similarity(gradiends, by, m, layout=layout, **kw))
        if progress is not None:
            progress((i + 1) / len(jobs), f"similarity {m}" + (f" by {by}" if by else ""))
    return pd.concat(frames, ignore_index=True)


def compare_gradiends(gradiends: Mapping[str, Gradiend], cfg: CompareConfig = CompareConfig(),
                      encodings: pd.DataFrame | None = None, progress: Progress | None = None) -> Comparison:
    """All tables and the summary. encodings: the long table (cross_encoding.ENCODING_COLUMNS), optional;
    progress(fraction, message): called as the similarity matrices are done (the bulk of the work)."""
    gradiends = {str(k): g for k, g in gradiends.items()}
    tables = {"similarity": similarity_tables(gradiends, cfg, progress),
              "topk": pd.concat([topk_weights(gradiends, p, cfg.topk) for p in cfg.topk_parts], ignore_index=True)}
    if encodings is not None:
        directions = {i: g.directions for i, g in gradiends.items()}
        tables["cross_encoding"] = xe.cross_encoding_matrix(encodings, directions)
        tables["pairwise_encoding"] = xe.pairwise_encoding_matrix(tables["cross_encoding"])
        tables["anchor_aligned"] = xe.anchor_aligned_matrix(encodings, directions)
    return Comparison(tables, summarize(gradiends, tables, cfg))


def _clean(x):
    """JSON-able: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):
        x = x.item()
    return None if isinstance(x, float) and not math.isfinite(x) else x


def summarize(gradiends: Mapping[str, Gradiend], tables: Mapping[str, pd.DataFrame], cfg: CompareConfig) -> dict:
    """ids, kept dims, config, every ungrouped matrix {measure: {row: {col: value}}}, encoding diagonals."""
    sim = tables["similarity"]
    flat = sim[sim["group_by"] == "none"]
    matrices = {m: as_matrix(g).to_dict(orient="index") for m, g in flat.groupby("measure", sort=False)}
    out = {"gradiends": list(gradiends), "kept_dims": {i: g.param_map.input_dim for i, g in gradiends.items()},
           "config": asdict(cfg), "similarity": matrices, "rows": {k: len(v) for k, v in tables.items()}}
    if "cross_encoding" in tables:
        ce = tables["cross_encoding"].drop_duplicates("gradiend_id")
        out["cross_encoding_diagonal"] = dict(zip(ce["gradiend_id"], ce["diagonal"]))
        aa = tables["anchor_aligned"].drop_duplicates("anchor")
        out["anchor_aligned_diagonal"] = dict(zip(aa["anchor"], aa["diagonal"]))
    return _clean(out)


def write_comparison(c: Comparison, out: str | Path) -> dict[str, Path]:
    """`<name>.parquet` per table and summary.json, each written atomically; name -> path."""
    out = Path(out)
    paths = {name: atomic_write_bytes(out / f"{name}.parquet", df.to_parquet(index=False))
             for name, df in c.tables.items()}
    paths["summary"] = atomic_write_json(out / "summary.json", c.summary)
    return paths


def read_comparison(out: str | Path) -> dict[str, pd.DataFrame]:
    """The tables write_comparison stored in `out`, by name."""
    return {p.stem: pd.read_parquet(p) for p in sorted(Path(out).glob("*.parquet"))}
