"""extract-gradients of several pairs of a suite in one pass over the rows.

The pairs of a suite read the same model and data and extract the same rows; only their pre-pruning
(sampled from each pair's transitions) keeps different dims. Their extractions are built together: each
pair's selection is computed as in its own build, then every row block's gradients are computed ONCE over
the union of the kept dims, and each pair's columns are cut out, scaled and written into that pair's
own store. A column's value does not depend on which other columns are computed (extraction.
extract_block_into), so every store is byte-identical to the pair's single-run extraction, under the same
key: suites and single runs reuse each other's stores, and a pair added to a suite extracts only its own.

Why one store per pair rather than one union store read by every pair: the stores stay the single runs'
(same keys and bytes, the float16 block scales computed over the pair's own columns), and training reads
each row's kept dims contiguously. The price is disk: the sum of the pairs' stores instead of the union's
(bench/suite_extraction.py measures both).

A killed shared build resumes like a single one: each pair's staging dir keeps the blocks it recorded.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .. import extraction as xg
from ..errors import StoreError
from ..io import human_bytes
from .runner import is_disk_full, key_for, stage_record


def signature(conf: dict) -> dict:
    """What pairs must share to be extracted in one pass: everything but the pre-pruning's pair."""
    pre = {k: v for k, v in (conf.get("pre_prune") or {}).items() if k != "pair"}
    return {**conf, "pre_prune": pre}


def union_map(pmap, keeps: list[torch.Tensor | None]):
    """(map of the dims to compute, each store's columns in it: a sorted index tensor or None = all)."""
    if any(k is None for k in keeps):  # a store without pre-pruning: compute every dim
        return pmap, keeps
    union = torch.unique(torch.cat(keeps))  # sorted
    return pmap.select(union), [torch.searchsorted(union, k) for k in keeps]


def build(store, stage, confs: list[dict], inputs: dict, progress=None) -> dict:
    """Build every output of `confs` (steps of `stage`) missing from the store, in one pass; returns
    {"built": keys built, "rows_computed": rows whose gradients were computed, "union_dim", "seconds"}."""
    progress = progress or (lambda f, msg="": None)
    keys = sorted({key_for(stage.name, stage.version, c, inputs): c for c in confs}.items())
    with contextlib.ExitStack() as locks:
        for key, _ in keys:  # sorted: two suites sharing some pairs never wait on each other in a cycle
            locks.enter_context(store.lock(stage.name, key))
        todo = [(key, conf) for key, conf in keys if store.problems(stage.name, key)]
        if not todo:
            return {"built": [], "rows_computed": 0, "union_dim": 0, "seconds": 0.0}
        return _build(store, stage, todo, {n: store.localize(m) for n, m in inputs.items()}, progress)


def _build(store, stage, todo: list[tuple[str, dict]], inputs: dict, progress) -> dict:
    t0 = time.perf_counter()
    ex = xg.load(todo[0][1], inputs)
    outs = [store.staging(stage.name, key, resumable=True) for key, _ in todo]  # kept if this build dies
    parts = [xg.pruned_for(ex, conf, out, progress) for (_, conf), out in zip(todo, outs)]
    union, cols = union_map(ex.pmap, [xg.kept_dims(out) for out in outs])
    started = [xg.start(out, p) for out, p in zip(outs, parts)]  # (zarr group, blocks done) each
    if remaining(parts, started) > shutil.disk_usage(outs[0]).free:
        raise disk_error(outs[0], parts, started, "extraction needs")
    try:
        setup = time.perf_counter() - t0  # the model, the rows and every pair's pre-pruning
        rows, seconds = _extract(ex, union, parts, cols, outs, started, progress)
    except OSError as e:  # every staging dir is kept: the next run resumes each store from its blocks
        if is_disk_full(e):
            raise disk_error(outs[0], parts, started, "the disk filled up; the rest needs") from None
        raise
    built = []
    for (key, conf), out, p in zip(todo, outs, parts):
        info = {**xg.finish(out, p), "shared_pass": {"outputs": len(todo), "union_dim": union.input_dim}}
        record = stage_record(stage.version, conf, inputs, time.perf_counter() - t0, info)
        store.publish(stage.name, key, out, record)
        built.append(key)
    return {"built": built, "rows_computed": rows, "union_dim": union.input_dim,
            "seconds": round(time.perf_counter() - t0, 3), "parts_seconds": {k: round(v, 2) for k, v in {"setup_and_pre_prune": setup, **seconds}.items()}}


def remaining(parts, started) -> int:
    """Bytes the stores' unwritten row blocks take at most."""
    return sum(xg.bytes_needed(p.n - p.rows_in(done), p.pmap.input_dim, p.x.dtype) for p, (_, done) in zip(parts, started))


def disk_error(out: Path, parts, started, what: str) -> StoreError:
    kept = sum(p.rows_in(done) for p, (_, done) in zip(parts, started))
    return StoreError(f"suite extraction of {len(parts)} pairs: {what} up to {human_bytes(remaining(parts, started))} "
                      f"more but {human_bytes(shutil.disk_usage(out).free)} are free at {out.parent} ({kept} rows of "
                      f"the {len(parts)} stores are kept); free disk or pair fewer classes, then run again: it resumes")


def _extract(ex, union, parts, cols, outs: list[Path], started, progress) -> tuple[int, dict]:
    """Every row block some store still lacks, computed once and written to each store lacking it
    (the write of block k overlaps the computing of block k+1); returns the rows computed and the
    seconds spent computing gradients, scaling them per store, writing them (a thread) and waiting
    for the writer."""
    from ..gradients import GradientExtractor

    extractor = GradientExtractor(ex.base, union)
    todo = [(r0, [i for i, (_, done) in enumerate(started) if r0 not in done]) for r0 in ex.blocks()]
    todo = [(r0, need) for r0, need in todo if need]
    total, finished = sum(len(ex.rows.iloc[r0:r0 + ex.x.batch_size]) for r0, _ in todo), 0
    hashed = [set() for _ in outs]
    seconds = {"gradients": 0.0, "quantize": 0.0, "write": 0.0, "wait_for_writer": 0.0}

    def write(r0: int, need: list[int], blocks: list) -> None:
        t0 = time.perf_counter()
        for i, (g_f, g_a) in zip(need, blocks):
            xg.write_block(started[i][0], r0, g_f, g_a, outs[i] / "gradients.zarr", hashed[i])
            started[i][1].add(r0)
            xg.write_progress(outs[i], ex.n, parts[i].pmap.input_dim, started[i][1])
        seconds["write"] += time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for r0, need in todo:
            block = ex.rows.iloc[r0:r0 + ex.x.batch_size]
            targets = [(cols[i], parts[i].pmap.input_dim) for i in need]
            blocks = xg.extract_block_into(extractor, block, ex.x.micro_batch_size, targets, ex.x.dtype, seconds)
            t0 = time.perf_counter()
            if pending is not None:
                pending.result()
            seconds["wait_for_writer"] += time.perf_counter() - t0
            pending = writer.submit(write, r0, need, blocks)
            finished += len(block)
            progress(finished / max(total, 1), f"extracted {finished}/{total} rows once for {len(outs)} pairs "
                                               f"({union.input_dim} dims)")
        if pending is not None:
            pending.result()
    return finished, seconds
