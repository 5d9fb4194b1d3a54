"""extract-gradients: per-example factual and alternative gradients streamed into a Zarr store.

Rows: every training row (train, validation, test) and up to `max_neutral_rows` neutral sentences with
one word masked (factual gradient only). Storing both factual and alternative gradients means changing
`source`/`target` later never re-extracts. Each row block (`batch_size` rows) is extracted in
micro-batches, converted to the storage dtype at once and written as whole chunks, so peak memory is
bounded by one block and never grows with the number of rows.
"""
from __future__ import annotations

import random
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.creation import read_dataset
from ..errors import StoreError
from ..grad_store import create_store, to_storage
from ..io import atomic_write_json
from ..param_map import ParamMap, select_parameters
from .common import info, load_prepared_model, out_path, section

NAME = "extract-gradients"
VERSION = "1"
MASK = "[MASK]"
PROGRESS = "progress.json"  # in the staging dir while building: row blocks already written
BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


def config_slice(cfg) -> dict:
    return {"extract": section(cfg.extract)}


def neutral_rows(neutral: pd.DataFrame, exclude: set[str], max_rows: int | None, seed: int) -> pd.DataFrame:
    """Mask one seeded-random alphabetic word (not an excluded word) per neutral sentence."""
    rng = random.Random(seed)
    rows = []
    for rid, text in zip(neutral["row_id"], neutral["text"]):
        words = [m for m in re.finditer(r"\b[A-Za-z]+\b", text) if m.group().lower() not in exclude]
        if not words:
            continue
        m = rng.choice(words)
        rows.append({"row_id": int(rid), "masked": text[:m.start()] + MASK + text[m.end():],
                     "factual": m.group(), "text": text})
        if max_rows is not None and len(rows) >= max_rows:
            break
    return pd.DataFrame(rows, columns=["row_id", "masked", "factual", "text"])


def row_index(training: pd.DataFrame, neutral: pd.DataFrame) -> pd.DataFrame:
    """One table of every stored row, in store order: train, validation, test, then neutral."""
    order = {"train": 0, "validation": 1, "test": 2}
    t = training.assign(_o=training["split"].map(order)).sort_values(["_o", "row_id"], kind="stable")
    t = t.drop(columns="_o").assign(kind="training")
    n = neutral.assign(kind="neutral", split="neutral", alternative="", factual_class="neutral",
                       alternative_class="", label=0, transition="", target_word=neutral["factual"].str.lower(),
                       n_masks=1)
    cols = ["row_id", "kind", "split", "masked", "factual", "alternative", "factual_class",
            "alternative_class", "label", "target_word"]
    rows = pd.concat([t[cols], n[cols]], ignore_index=True)
    rows.insert(0, "store_row", np.arange(len(rows), dtype=np.int64))
    return rows.astype({"label": "int8", "row_id": "int64"})


def check_disk(out: Path, n_rows: int, dim: int, dtype: str) -> int:
    need = n_rows * dim * BYTES[dtype] * 2
    free = shutil.disk_usage(out).free
    if need > free:
        raise StoreError(f"extraction needs up to {need / 2**30:.1f} GiB uncompressed but only "
                         f"{free / 2**30:.1f} GiB are free at {out}; free disk, select fewer parameters "
                         f"(extract.include) or fewer rows (data.max_per_class)")
    return need


def check_targets(base, rows: pd.DataFrame) -> None:
    """Every target word must be encodable before any backward pass runs."""
    from ..lm import target_token_ids

    words = set(rows["factual"]) | set(w for w in rows["alternative"] if w)
    for w in sorted(words):
        target_token_ids(base.tokenizer, w, base.objective)


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    from ..gradients import GradientExtractor
    from ..experiment import ExtractSection

    x = ExtractSection(**conf["extract"])
    # the thread count changes the summation order inside matmuls, hence the stored bytes: it is part
    # of the key and set explicitly, so threads, Dask and Ray workers write identical stores
    torch.set_num_threads(x.threads)
    base = load_prepared_model(inputs["model"])
    training, neutral = read_dataset(out_path(inputs["data"]))
    classes = dict(info(inputs["data"])["classes"])  # ordered [name, words] pairs -> dict
    exclude = {w for ws in classes.values() for w in ws}
    rows = row_index(training, neutral_rows(neutral, exclude, x.max_neutral_rows, seed=0))
    pmap = select_parameters(base.model, x.include, x.exclude)
    check_targets(base, rows)
    check_disk(out, len(rows), pmap.input_dim, x.dtype)
    done = read_progress(out, len(rows), pmap.input_dim)  # row blocks a killed run already wrote
    if done:
        import zarr

        store = zarr.open_group(str(out / "gradients.zarr"), mode="r+")
    else:
        store = create_store(out / "gradients.zarr", len(rows), pmap.input_dim, x.dtype, x.batch_size,
                             x.compression)
        write_progress(out, len(rows), pmap.input_dim, done)
    extractor = GradientExtractor(base, pmap)
    write_param_map(out, pmap)
    n = len(rows)
    # Compressing and writing block k overlaps extracting block k+1 (one write in flight, so memory
    # stays bounded by two blocks whatever the number of rows). A block is recorded as done only
    # after its write returned, so a resumed run redoes at most the blocks that were in flight.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for r0 in range(0, n, x.batch_size):
            if r0 in done:
                continue
            block = rows.iloc[r0:r0 + x.batch_size]
            g_f, g_a = extract_block(extractor, block, x.micro_batch_size, pmap.input_dim, x.dtype)
            if pending is not None:
                done.add(pending.result())
                write_progress(out, n, pmap.input_dim, done)
            pending = writer.submit(write_block, store, r0, g_f, g_a)
            progress((r0 + len(block)) / n, f"extracted {r0 + len(block)}/{n} rows")
        if pending is not None:
            done.add(pending.result())
            write_progress(out, n, pmap.input_dim, done)
    rows.to_parquet(out / "rows.parquet", index=False)
    (out / PROGRESS).unlink()  # bookkeeping of the build, not part of the output
    return {"n_rows": n, "dim": pmap.input_dim, "dtype": x.dtype, "n_params": len(pmap.specs),
            "splits": {k: int(v) for k, v in rows["split"].value_counts().sort_index().items()},
            "base": {"name_or_path": base.name_or_path, "digest": base.digest, "objective": base.objective},
            "classes": list(classes.items())}


build.resumable = True  # run_stage hands it the staging dir of a killed run of the same key


def write_block(store, r0: int, g_f: np.ndarray, g_a: np.ndarray) -> int:
    store["factual"][r0:r0 + len(g_f)] = g_f
    store["alternative"][r0:r0 + len(g_a)] = g_a
    return r0


def read_progress(out: Path, n_rows: int, dim: int) -> set[int]:
    """First rows of the blocks a killed run finished writing into `out` (empty: start from scratch)."""
    from ..io import read_json

    try:
        p = read_json(out / PROGRESS)
    except (FileNotFoundError, ValueError):
        return set()
    if (p.get("n_rows"), p.get("dim")) != (n_rows, dim) or not (out / "gradients.zarr").is_dir():
        return set()
    for tmp in out.glob(".*.tmp"):  # half-written atomic writes of the killed run
        tmp.unlink()
    return set(p["done"])


def write_progress(out: Path, n_rows: int, dim: int, done: set[int]) -> None:
    atomic_write_json(out / PROGRESS, {"n_rows": n_rows, "dim": dim, "done": sorted(done)})


def extract_block(extractor, block: pd.DataFrame, micro: int, dim: int, dtype: str):
    """(n, P) factual and alternative gradients of one block, in storage dtype (zeros: no alternative)."""
    np_dtype = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}[dtype]
    g_f = np.zeros((len(block), dim), dtype=np_dtype)
    g_a = np.zeros((len(block), dim), dtype=np_dtype)
    for i in range(0, len(block), micro):
        mb = block.iloc[i:i + micro]
        masked, fact, alt = list(mb["masked"]), list(mb["factual"]), list(mb["alternative"])
        has_alt = np.array([bool(a) for a in alt])
        if has_alt.all():
            f, a = extractor.pair_gradients(masked, fact, alt)
            g_f[i:i + len(mb)], g_a[i:i + len(mb)] = to_storage(f, dtype), to_storage(a, dtype)
        else:  # neutral rows: factual only
            g_f[i:i + len(mb)] = to_storage(extractor.example_gradients(masked, fact), dtype)
            if has_alt.any():
                idx = np.flatnonzero(has_alt)
                a = extractor.example_gradients([masked[j] for j in idx], [alt[j] for j in idx])
                g_a[i + idx] = to_storage(a, dtype)
    return g_f, g_a


def write_param_map(out: Path, pmap: ParamMap) -> None:
    from safetensors.torch import save_file

    atomic_write_json(out / "param_map.json", pmap.to_json())
    tensors = pmap.tensors()
    if tensors:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "param_map.safetensors"))


def read_param_map(directory: Path) -> ParamMap:
    from safetensors.torch import load_file

    from ..io import read_json

    t = directory / "param_map.safetensors"
    return ParamMap.from_json(read_json(directory / "param_map.json"), load_file(str(t)) if t.exists() else {})
