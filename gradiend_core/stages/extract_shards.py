"""extract-gradients split into row shards: prepare, then N shards (fanned out by any task runner, on
any host), then finalize.

A row block is one zarr row shard of the store (`Extraction.create_store`): shards own disjoint sets
of blocks, so they write disjoint files, and the published output is byte-identical to the one-task
build, under the same key (the shard count is a runner setting, in no stage key). The steps pass
small plans and manifests (row blocks, file digests), never arrays.

- Local store: shards write into the staging dir prepare made (a local store is a file system every
  worker sees) and record their blocks in their own progress-shard-<i>.json, so a killed run
  resumes like the one-task build.
- URL store: every shard builds its blocks into a local zarr of identical layout on its own host and
  uploads only its chunk files to a remote staging prefix; finalize moves them into place and writes
  the manifest last. A killed run on a URL store redoes its blocks.

The caller holds the output's lock (`store.lock`) from prepare to finalize, because the staging dir
outlives each step; the steps themselves take no lock.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from ..cas import ArtifactStore
from ..errors import StoreError
from . import extract_gradients as xg
from .common import contiguous_runs
from .runner import key_for, stage_record, staging_for

NAME = xg.NAME


def output_key(conf: dict, inputs: dict[str, dict]) -> str:
    return key_for(NAME, xg.VERSION, conf, inputs)


def split(starts: list[int], shards: int) -> list[list[int]]:
    """Contiguous, near-equal runs of row blocks: at most `shards` of them, none empty."""
    return contiguous_runs(starts, shards)


def prepare(store: ArtifactStore, conf: dict, inputs: dict, shards: int, progress=None) -> dict:
    """The plan of a sharded extraction, or {"cached": manifest} when the output is already valid."""
    key = output_key(conf, inputs)
    if not store.problems(NAME, key):
        return {"key": key, "cached": {**store.load(NAME, key), "cached": True}}
    inputs = {n: store.localize(m) for n, m in inputs.items()}
    started = time.time()
    if store.remote:
        plan = _prepare_remote(store, key, conf, inputs, progress)
    else:
        plan = _prepare_local(store, key, conf, inputs, progress)
    done = set(plan.pop("done"))
    todo = [r0 for r0 in range(0, plan["n_rows"], plan["batch_size"]) if r0 not in done]
    return {**plan, "key": key, "started": started, "blocks": split(todo, shards)}


def _prepare_local(store, key: str, conf: dict, inputs: dict, progress) -> dict:
    staging = staging_for(store, NAME, key, resumable=True)  # a killed run's blocks are kept
    ex = xg.setup(conf, inputs, staging, progress)
    n, dim = ex.n, ex.pmap.input_dim
    xg.check_disk(staging, n, dim, ex.x.dtype)
    done = xg.read_progress(staging, n, dim)
    if not done:
        ex.create_store(staging)
    xg.write_param_map(staging, ex.pmap)
    xg.write_rows(staging, ex)
    return {"staging": str(staging), **_shape(ex), "done": sorted(done)}


def _prepare_remote(store, key: str, conf: dict, inputs: dict, progress) -> dict:
    scratch = _scratch(store, key, "prepare")
    try:
        ex = xg.setup(conf, inputs, scratch, progress)
        ex.create_store(scratch)
        xg.write_param_map(scratch, ex.pmap)
        xg.write_rows(scratch, ex)
        prefix = store.new_staging(NAME, key)
        files = store.upload(scratch, _files(scratch), prefix)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"remote_staging": prefix, "files": files, **_shape(ex), "done": []}


def _shape(ex) -> dict:
    return {"n_rows": ex.n, "dim": ex.pmap.input_dim, "batch_size": ex.x.batch_size, "info": ex.info()}


def shard(store: ArtifactStore, conf: dict, inputs: dict, plan: dict, index: int, progress=None) -> dict:
    """Extract shard `index`'s row blocks; returns what it did (and, on a URL store, what it uploaded)."""
    t0 = time.perf_counter()
    starts = plan["blocks"][index]
    inputs = {n: store.localize(m) for n, m in inputs.items()}
    progress = progress or (lambda f, msg="": None)
    files = _shard_remote(store, conf, inputs, plan, starts, progress) if store.remote \
        else _shard_local(conf, inputs, plan, index, starts, progress)
    rows = sum(min(r0 + plan["batch_size"], plan["n_rows"]) - r0 for r0 in starts)
    return {"shard": index, "blocks": starts, "rows": rows, "seconds": round(time.perf_counter() - t0, 3),
            "files": files}


def _shard_local(conf, inputs, plan, index, starts, progress) -> dict:
    import zarr

    out = Path(plan["staging"])
    ex = xg.setup(conf, inputs, out)  # reuses the pre-pruning selection prepare saved there
    group = zarr.open_group(str(out / "gradients.zarr"), mode="r+")
    name = f"progress-shard-{index}.json"
    # a killed run's shard with the same index may have recorded other blocks here: keep them
    done = xg.read_progress_file(out / name, ex.n, ex.pmap.input_dim) or set()

    def record(r0: int) -> None:
        done.add(r0)
        xg.write_progress(out, ex.n, ex.pmap.input_dim, done, name)

    xg.extract_blocks(ex, group, starts, record, progress)
    return {}


def _shard_remote(store, conf, inputs, plan, starts, progress) -> dict:
    scratch = _scratch(store, plan["key"], "shard")
    try:
        # prepare's small files (pre-pruning selection, param map): the same selection on every host
        store.download(plan["remote_staging"], {r: m for r, m in plan["files"].items()
                                                if not r.startswith("gradients.zarr/")}, scratch)
        ex = xg.setup(conf, inputs, scratch)
        group = ex.create_store(scratch)  # identical layout, so chunk file names match the final store
        xg.extract_blocks(ex, group, starts, lambda r0: None, progress)
        chunks = [r for r in _files(scratch) if r.startswith("gradients.zarr/") and not r.endswith("zarr.json")]
        return store.upload(scratch, chunks, plan["remote_staging"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def finalize(store: ArtifactStore, conf: dict, inputs: dict, plan: dict, shards: list[dict]) -> dict:
    """Check that every row block was written, then publish the output with its manifest."""
    if "cached" in plan:
        return plan["cached"]
    key, n, bs = plan["key"], plan["n_rows"], plan["batch_size"]
    written = {r0 for s in shards for r0 in s["blocks"]}
    if not store.remote:
        written |= xg.read_progress(Path(plan["staging"]), n, plan["dim"])
    missing = sorted(set(range(0, n, bs)) - written)
    if missing:
        raise StoreError(f"{NAME}/{key}: row blocks starting at rows {missing[:5]} were not written by any "
                         f"shard; re-run the flow (finished blocks of a local store are kept)")
    record = stage_record(xg.VERSION, conf, inputs, time.time() - plan["started"], plan["info"])
    record["shards"] = [{k: s[k] for k in ("shard", "rows", "seconds")} for s in shards]
    if store.remote:
        files = {rel: meta for part in [plan["files"], *(s["files"] for s in shards)] for rel, meta in part.items()}
        m = store.publish(NAME, key, store.staging_dir(NAME, key), record, remote_files=files,
                          remote_staging=plan["remote_staging"])
    else:
        staging = Path(plan["staging"])
        xg.drop_progress(staging)
        m = store.publish(NAME, key, staging, record)
    m["cached"] = False
    return m


def _scratch(store: ArtifactStore, key: str, label: str) -> Path:
    """A private local dir for one step (`.shard-` dirs are never adopted as staging; gc removes them)."""
    (store.root / NAME).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".shard-{key}-{label}-", dir=store.root / NAME))


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
