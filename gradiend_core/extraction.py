"""Extracting per-example factual and alternative gradients into a Zarr store, in resumable row blocks.

Rows: every training row (train, validation, test) and up to `max_neutral_rows` neutral sentences with
one word masked (factual gradient only). Storing both factual and alternative gradients means changing
`source`/`target` later never re-extracts. Each row block (`batch_size` rows) is extracted in
micro-batches, converted to the storage dtype at once and written as whole chunks, so peak memory is
bounded by one block and never grows with the number of rows. A block is recorded in a progress file
once written, so a killed build (or a row shard of it) resumes from the blocks it finished.

With pre-pruning on (the default) the kept dims are chosen first from a sample of rows
(pruning.sample_keep) and only those dims are stored. P = stored dims.
"""
from __future__ import annotations

import dataclasses
import random
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data.creation import read_dataset
from .errors import StoreError
from .grad_store import SCALE_COLS, create_store, quantize, store_rows
from .io import atomic_write_json, human_bytes
from .devices import describe
from .manifests import info, load_prepared_model, out_path
from .stages.common import base_placement
from .param_map import ParamMap, save_param_map, select_parameters
from .pruning import KEEP_FILE, PrePruneConfig, kept_per_param, sample_keep
from .tokens import MASK

PROGRESS = "progress.json"  # in the staging dir while building: row blocks already written
BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


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


def training_masked_rows(training: pd.DataFrame, exclude: set[str], max_rows: int | None,
                         seed: int) -> pd.DataFrame:
    """Neutral rows made from held-out training sentences (the reference's neutral_training_masked):
    each distinct test sentence, its target words visible, with one seeded-random other word masked."""
    test = training[training["split"] == "test"].drop_duplicates("text")
    return neutral_rows(test[["row_id", "text"]], exclude, max_rows, seed)


def row_index(training: pd.DataFrame, neutral: pd.DataFrame, masked: pd.DataFrame | None = None) -> pd.DataFrame:
    """One table of every stored row, in store order: train, validation, test, neutral (kind
    "neutral", from the neutral data set), then test sentences with another word masked (kind
    "neutral_training_masked"). Neutral rows have a factual gradient only."""
    order = {"train": 0, "validation": 1, "test": 2}
    t = training.assign(_o=training["split"].map(order)).sort_values(["_o", "row_id"], kind="stable")
    t = t.drop(columns="_o").assign(kind="training")
    parts = [t] + [_neutral_kind(df, kind, split) for df, kind, split in
                   ((neutral, "neutral", "neutral"), (masked, "neutral_training_masked", "test")) if df is not None]
    cols = ["row_id", "kind", "split", "masked", "factual", "alternative", "factual_class",
            "alternative_class", "label", "target_word"]
    rows = pd.concat([p[cols] for p in parts], ignore_index=True)
    rows.insert(0, "store_row", np.arange(len(rows), dtype=np.int64))
    return rows.astype({"label": "int8", "row_id": "int64"})


def _neutral_kind(df: pd.DataFrame, kind: str, split: str) -> pd.DataFrame:
    return df.assign(kind=kind, split=split, alternative="", factual_class="neutral", alternative_class="",
                     label=0, transition="", target_word=df["factual"].str.lower(), n_masks=1)


def bytes_needed(n_rows: int, dim: int, dtype: str) -> int:
    """Upper bound of what `n_rows` rows of factual and alternative gradients take on disk (uncompressed)."""
    return n_rows * dim * BYTES[dtype] * 2


def check_disk(out: Path, n_rows: int, dim: int, dtype: str, stores: int = 1) -> int:
    """StoreError before extracting when the free space at `out` is below what `n_rows` (the rows
    still to extract) of `dim` dims need (`n_rows * dim` summed over several stores: `stores` of them)."""
    need = bytes_needed(n_rows, dim, dtype)
    free = shutil.disk_usage(out).free
    if need > free:
        what = f"the extractions of {stores} pairs need" if stores > 1 else "extraction needs"
        raise StoreError(f"{what} up to {human_bytes(need)} uncompressed but only {human_bytes(free)} "
                         f"are free at {out}; free disk, select fewer parameters (extract.include or pre_prune.topk)"
                         f" or fewer rows (data.max_per_class)" + ("; or pair fewer classes" if stores > 1 else ""))
    return need


def disk_full(out: Path, ex: "Extraction", done: set[int]) -> StoreError:
    """The error when the disk filled up during extraction: what is kept, what the rest needs."""
    kept = ex.rows_in(done)
    need = bytes_needed(ex.n - kept, ex.pmap.input_dim, ex.x.dtype)
    return StoreError(f"the disk filled up during extraction ({human_bytes(shutil.disk_usage(out).free)} free at "
                      f"{out.parent}): the {kept} of {ex.n} rows extracted are kept, the other {ex.n - kept} need "
                      f"up to {human_bytes(need)} more; free that much and run again, it resumes")


def rows_kept(stage_dir: Path, key: str, batch_size: int) -> int:
    """Rows a killed or failed extraction of `key` finished in its newest staging dir below `stage_dir`
    (what the next build resumes from; 0 when none)."""
    from .io import read_json

    from .store.local import STAGING

    dirs = sorted(stage_dir.glob(f"{STAGING}{key}-*"), key=lambda p: p.stat().st_mtime_ns) if stage_dir.is_dir() else []
    done: set[int] = set()
    for f in progress_files(dirs[-1]) if dirs else []:
        try:
            done |= set(read_json(f).get("done", []))
        except (OSError, ValueError):
            continue
    return len(done) * batch_size


def check_targets(base, rows: pd.DataFrame) -> None:
    """Every target word must be encodable before any backward pass runs."""
    words = set(rows["factual"]) | set(w for w in rows["alternative"] if w)
    for w in sorted(words):
        base.objective.target_token_ids(base.tokenizer, w)


@dataclass
class Extraction:
    """What every part of one extraction needs (the whole build, or one row shard of it)."""
    x: "ExtractSection"
    base: object            # BaseLM
    rows: pd.DataFrame      # every stored row, in store order
    pmap: ParamMap          # the dims stored: pre-pruned when pre_prune is enabled
    classes: dict[str, list[str]]
    pruned: dict | None = None  # pre-pruning summary (sample rows, kept dims per tensor)
    where: dict | None = None   # {"device": where the base model ran, "model_dtype": its dtype}

    @property
    def n(self) -> int:
        return len(self.rows)

    def blocks(self) -> list[int]:
        """First row of every row block; a block is one zarr row chunk, written whole by one writer."""
        return list(range(0, self.n, self.x.batch_size))

    def rows_in(self, blocks) -> int:
        """How many rows the row blocks starting at `blocks` hold."""
        return sum(len(self.rows.iloc[r0:r0 + self.x.batch_size]) for r0 in blocks)

    def create_store(self, out: Path):
        # one-row inner chunks inside block-row shards: training reads scattered single rows, and
        # every block is still written whole (no read-modify-write)
        return create_store(out / "gradients.zarr", self.n, self.pmap.input_dim, self.x.dtype, 1,
                            self.x.compression, shard_rows=self.x.batch_size)

    def info(self) -> dict:
        rows, base = self.rows, self.base
        return {"n_rows": self.n, "dim": self.pmap.input_dim, "dtype": self.x.dtype, "n_params": len(self.pmap.specs),
                "splits": {k: int(v) for k, v in rows["split"].value_counts().sort_index().items()},
                "base": {"name_or_path": base.name_or_path, "digest": base.digest, "objective": base.objective.name},
                "classes": list(self.classes.items()), "pre_prune": self.pruned, **(self.where or {})}


def setup(conf: dict, inputs: dict, out: Path, progress=None) -> Extraction:
    """Load the model and the rows, select the parameters, check every target word, pre-prune.

    The pre-pruning selection is computed once per staging dir `out` and saved there, so row shards
    and a resumed build reuse it."""
    ex = load(conf, inputs)
    return pruned_for(ex, conf, out, progress)


def load(conf: dict, inputs: dict) -> Extraction:
    """The extraction before pre-pruning: the base model, every stored row and the unpruned map; shared
    by the pairs of a suite (extract_shared.py), which prune it each their own way (`pruned_for`)."""
    from .experiment import ExtractSection

    x = ExtractSection(**conf["extract"])
    # the thread count changes the summation order inside matmuls, hence the stored bytes: it is part
    # of the key and set explicitly, so threads, Dask and Ray workers write identical stores
    torch.set_num_threads(x.threads)
    device, dtype = base_placement(conf)  # model.device / model.dtype; the stored rows are CPU float32 first
    base = load_prepared_model(inputs["model"], device, dtype)
    training, neutral = read_dataset(out_path(inputs["data"]))
    classes = dict(info(inputs["data"])["classes"])  # ordered [name, words] pairs -> dict
    exclude = {w for ws in classes.values() for w in ws}
    rows = row_index(training, neutral_rows(neutral, exclude, x.max_neutral_rows, seed=0),
                     training_masked_rows(training, exclude, x.max_training_masked_rows, seed=1))
    pmap = select_parameters(base.model, x.include, x.exclude, backbone=base.objective.backbone(base.model))
    check_targets(base, rows)
    return Extraction(x, base, rows, pmap, classes, None, {"device": describe(device), "model_dtype": dtype})


def pruned_for(ex: Extraction, conf: dict, out: Path, progress=None) -> Extraction:
    """`ex` (unpruned) restricted to the dims its pre-pruning keeps (saved in `out`, see prune_first)."""
    pmap, pruned = prune_first(out, ex.base, ex.pmap, ex.rows, conf.get("pre_prune") or {}, ex.x, progress)
    return dataclasses.replace(ex, pmap=pmap, pruned=pruned)


def kept_dims(out: Path) -> torch.Tensor | None:
    """Local dims (sorted) the pre-pruning saved in `out` kept; None: pre-pruning off (every dim)."""
    from safetensors.torch import load_file

    path = out / KEEP_FILE
    return load_file(str(path))["keep"] if path.exists() else None


def prune_first(out: Path, base, pmap: ParamMap, rows: pd.DataFrame, pp_conf: dict, x, progress=None):
    """(map of the dims to store, pruning summary or None): pre-pruning runs before the bulk extraction."""
    from safetensors.torch import load_file, save_file

    from .gradients import GradientExtractor
    from .io import read_json

    if not pp_conf.get("enabled"):
        return pmap, None
    p = PrePruneConfig(**{k: v for k, v in pp_conf.items() if k != "pair"})
    pair = tuple(pp_conf["pair"])  # the GRADIEND pair: the sample is drawn from its transitions
    path, sample_path = out / KEEP_FILE, out / "pre_prune_sample.json"
    if path.exists():  # computed by the prepare step of this staging dir (or a killed run of the same key)
        keep, sample = load_file(str(path))["keep"], list(read_json(sample_path))
    else:
        if progress:
            progress(0.0, f"pre-prune: importance over {p.n_samples} sampled rows")
        s = sample_keep(GradientExtractor(base, pmap), rows, p, micro=x.micro_batch_size, pair=pair)
        keep, sample = s["keep"], s["sample_rows"]
        atomic_write_json(sample_path, sample)
        tmp = out / f".{KEEP_FILE}.tmp"
        save_file({"keep": keep, "importance": s["importance"]}, str(tmp))
        tmp.replace(path)  # last: its presence means the selection is complete
    return pmap.select(keep), {"unpruned_dim": pmap.input_dim, "dim": int(keep.numel()),
                               "sample_rows": sample, "kept_per_param": kept_per_param(pmap, keep)}


def start(out: Path, ex: Extraction):
    """(zarr group to write into, blocks already written) in `out`: a killed run's blocks are kept (its
    progress record says which), else a new empty store; fails early when the disk is too small."""
    n, dim = ex.n, ex.pmap.input_dim
    done = read_progress(out, n, dim)
    check_disk(out, n - ex.rows_in(done), dim, ex.x.dtype)  # a resumed build: only the rows still to do
    if done:
        import zarr

        group = zarr.open_group(str(out / "gradients.zarr"), mode="r+")
    else:
        group = ex.create_store(out)
        write_progress(out, n, dim, done)
    save_param_map(out, ex.pmap)
    return group, done


def extract_blocks(ex: Extraction, store, starts: list[int], record, progress, hash_root: Path | None = None) -> None:
    """Extract and write the row blocks starting at `starts`; `record(r0)` once block r0 is on disk.

    Compressing and writing block k overlaps extracting block k+1 (one write in flight, so memory
    stays bounded by two blocks whatever the number of rows). A block is recorded as done only
    after its write returned, so a resumed run redoes at most the blocks that were in flight.
    With `hash_root`, the writer thread also hashes the files each write completed (a block's rows
    are whole zarr shards, written once), so publishing the output in this process reads none of
    the gigabytes again (io.remember_digest).
    """
    from .gradients import GradientExtractor

    extractor = GradientExtractor(ex.base, ex.pmap)
    total = sum(len(ex.rows.iloc[r0:r0 + ex.x.batch_size]) for r0 in starts)
    finished = 0
    hashed: set[Path] = set()  # files under hash_root the writer has hashed
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        for r0 in starts:
            block = ex.rows.iloc[r0:r0 + ex.x.batch_size]
            g_f, g_a = extract_block(extractor, block, ex.x.micro_batch_size, ex.pmap.input_dim, ex.x.dtype)
            if pending is not None:
                record(pending.result())
            pending = writer.submit(write_block, store, r0, g_f, g_a, hash_root, hashed)
            finished += len(block)
            try:
                progress(finished / max(total, 1), f"extracted {finished}/{total} rows")
            except KeyboardInterrupt:  # a stop at this safe point (gradiend_core.stop): keep the block in flight
                record(pending.result())
                raise
        if pending is not None:
            record(pending.result())


def finish(out: Path, ex: Extraction) -> dict:
    """The row index, and no build bookkeeping left in the output; returns the manifest's info."""
    write_rows(out, ex)
    drop_progress(out)
    return ex.info()


def write_rows(out: Path, ex: Extraction) -> None:
    ex.rows.to_parquet(out / "rows.parquet", index=False)


def drop_progress(out: Path) -> None:
    for p in progress_files(out):  # bookkeeping of the build, not part of the output
        p.unlink()


def write_block(store, r0: int, g_f, g_a, hash_root: Path | None = None, hashed: set[Path] | None = None) -> int:
    """Write one block's rows: g_f, g_a are (storage array (n, P), scales (n,)) pairs."""
    for kind, (g, scale) in (("factual", g_f), ("alternative", g_a)):
        store_rows(store, kind, r0, g, scale)
    if hash_root is not None:
        from .io import remember_digest

        for p in sorted(hash_root.rglob("*")):
            if p not in hashed and p.is_file():
                remember_digest(p)
                hashed.add(p)
    return r0


def progress_files(out: Path) -> list[Path]:
    """progress.json of a whole build and progress-shard-<i>.json of each row shard (one writer each)."""
    return sorted(p for p in out.glob("progress*.json") if p.name == PROGRESS or p.name.startswith("progress-shard-"))


def read_progress(out: Path, n_rows: int, dim: int) -> set[int]:
    """First rows of the blocks a killed run finished writing into `out` (empty: start from scratch)."""
    if not (out / "gradients.zarr").is_dir():
        return set()
    done: set[int] = set()
    for f in progress_files(out):
        blocks = read_progress_file(f, n_rows, dim)
        if blocks is None:  # written for another row count or map: nothing here is reusable
            return set()
        done |= blocks
    for tmp in out.glob(".*.tmp"):  # half-written atomic writes of the killed run
        tmp.unlink()
    for tmp in (out / "gradients.zarr").rglob("*.partial"):  # zarr's own, of a shard being written
        tmp.unlink()
    return done


def read_progress_file(path: Path, n_rows: int, dim: int) -> set[int] | None:
    """Blocks recorded in one progress file (empty if absent or unreadable; None if for other shapes)."""
    from .io import read_json

    try:
        p = read_json(path)
    except (FileNotFoundError, ValueError):
        return set()
    return set(p["done"]) if (p.get("n_rows"), p.get("dim")) == (n_rows, dim) else None


def write_progress(out: Path, n_rows: int, dim: int, done: set[int], name: str = PROGRESS) -> None:
    atomic_write_json(out / name, {"n_rows": n_rows, "dim": dim, "done": sorted(done)})


def extract_block(extractor, block: pd.DataFrame, micro: int, dim: int, dtype: str):
    """Factual and alternative gradients of one block, each as (storage array (n, P), scales (n,)):
    float16 scaled per row and column block (grad_store.quantize); zeros, scale 1 where a row has no alternative."""
    return extract_block_into(extractor, block, micro, [(None, dim)], dtype)[0]


def extract_block_into(extractor, block: pd.DataFrame, micro: int, targets: list, dtype: str,
                       seconds: dict | None = None) -> list:
    """One block's gradients computed once and stored for every target: `targets` lists (cols, P_t), the
    extractor's columns a store keeps (a sorted index tensor, None: all of them) and how many. Returns,
    per target, the (g_f, g_a) pairs of `extract_block`. A column's value does not depend on which
    other columns the extractor computes (per-example products are formed whole, then gathered), so a
    target's rows are byte-identical to an extraction of its columns alone. `seconds` (optional) adds the
    time spent computing gradients ("gradients") and scaling and casting them ("quantize")."""
    import time

    seconds = {} if seconds is None else seconds
    np_dtype = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}[dtype]
    n, out = len(block), []
    for _, dim in targets:
        blocks = max(-(-dim // SCALE_COLS), 1)
        out.append(tuple((np.zeros((n, dim), dtype=np_dtype), np.ones((n, blocks), dtype=np.float32))
                         for _ in range(2)))  # (factual, alternative) x (data (n, P_t), scales)

    def keep(kind: int, rows, g: torch.Tensor) -> None:  # g (r, P) -> every target's columns
        t0 = time.perf_counter()
        seconds["gradients"] = seconds.get("gradients", 0.0) + t0 - clock[0]
        for (cols, _), t in zip(targets, out):
            data, scale = t[kind]
            data[rows], scale[rows] = quantize(g if cols is None else g.index_select(1, cols), dtype)
        clock[0] = time.perf_counter()
        seconds["quantize"] = seconds.get("quantize", 0.0) + clock[0] - t0

    clock = [time.perf_counter()]  # when the gradients being computed now started

    for i in range(0, n, micro):
        mb = block.iloc[i:i + micro]
        masked, fact, alt = list(mb["masked"]), list(mb["factual"]), list(mb["alternative"])
        has_alt = np.array([bool(a) for a in alt])
        rows = slice(i, i + len(mb))
        if has_alt.all():
            f, a = extractor.pair_gradients(masked, fact, alt)
            keep(0, rows, f)
            keep(1, rows, a)
        else:  # neutral rows: factual only
            keep(0, rows, extractor.example_gradients(masked, fact))
            if has_alt.any():
                idx = np.flatnonzero(has_alt)
                keep(1, i + idx, extractor.example_gradients([masked[j] for j in idx], [alt[j] for j in idx]))
    return [tuple(t) for t in out]
