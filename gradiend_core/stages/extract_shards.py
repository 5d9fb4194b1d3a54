"""extract-gradients split into row shards: prepare, then N shards (fanned out by any task runner, on
any host), then finalize.

A row block is one zarr row shard of the store (`Extraction.create_store`): shards own disjoint sets
of blocks, so they write disjoint files, and the published output is byte-identical to the one-task
build, under the same key (the shard count is a runner setting, in no stage key). The steps pass
small plans and manifests (row blocks, a staging id), never arrays.

The steps build in the store's shared staging area (`Store.shared_staging`): prepare writes the
files every shard needs (rows, parameter map, pre-pruning selection, the empty zarr), each shard
writes its blocks in its part workspace and records them in its own progress-shard-<i>.json, and
finalize publishes the lot without the progress records. Where the workspace is the area itself (a
local store), a killed run resumes from the blocks its shards recorded, like the one-task build.

The caller holds the output's lock (`store.lock`) from prepare to finalize, because the staging area
outlives each step; the steps themselves take no lock.
"""
from __future__ import annotations

import time

from .. import extraction as xg
from ..errors import StoreError
from ..store import Store
from .common import contiguous_runs
from .runner import is_disk_full, key_for, stage_record

BOOKKEEPING = (xg.PROGRESS, "progress-shard-*.json")  # in the staging area while building, never published


def split(starts: list[int], shards: int) -> list[list[int]]:
    """Contiguous, near-equal runs of row blocks: at most `shards` of them, none empty."""
    return contiguous_runs(starts, shards)


def prepare(store: Store, stage, conf: dict, inputs: dict, shards: int, progress=None) -> dict:
    """The plan of a sharded extraction, or {"cached": manifest} when the output is already valid.
    `stage`: the extract-gradients declaration (its name and version make the output's key)."""
    name, version = stage.name, stage.version
    key = key_for(name, version, conf, inputs)
    if not store.problems(name, key):
        return {"key": key, "cached": {**store.load(name, key), "cached": True}}
    inputs = {n: store.localize(m) for n, m in inputs.items()}
    started = time.time()
    with store.shared_staging(name, key) as area:
        ex = xg.setup(conf, inputs, area.path, progress)
        n, dim = ex.n, ex.pmap.input_dim
        done = xg.read_progress(area.path, n, dim)  # blocks a killed run's shards finished
        xg.check_disk(area.path, n - ex.rows_in(done), dim, ex.x.dtype)
        if not done:
            ex.create_store(area.path)
        xg.save_param_map(area.path, ex.pmap)
        xg.write_rows(area.path, ex)
    todo = [r0 for r0 in range(0, n, ex.x.batch_size) if r0 not in done]
    return {"stage": name, "version": version, "key": key, "staging": area.id, "started": started, "n_rows": n, "dim": dim,
            "batch_size": ex.x.batch_size, "info": ex.info(), "done": sorted(done), "blocks": split(todo, shards)}


def shard(store: Store, conf: dict, inputs: dict, plan: dict, index: int, progress=None) -> dict:
    """Extract shard `index`'s row blocks into its part workspace; returns what it did."""
    import zarr

    t0 = time.perf_counter()
    starts = plan["blocks"][index]
    inputs = {n: store.localize(m) for n, m in inputs.items()}
    progress = progress or (lambda f, msg="": None)
    with store.part_workspace(plan["stage"], plan["key"], plan["staging"], f"shard-{index}") as out:
        ex = xg.setup(conf, inputs, out)  # reuses the pre-pruning selection prepare saved there
        group = zarr.open_group(str(out / "gradients.zarr"), mode="r+")
        name = f"progress-shard-{index}.json"
        # a killed run's shard with the same index may have recorded other blocks here: keep them
        done = xg.read_progress_file(out / name, ex.n, ex.pmap.input_dim) or set()

        def record(r0: int) -> None:
            done.add(r0)
            xg.write_progress(out, ex.n, ex.pmap.input_dim, done, name)

        try:
            xg.extract_blocks(ex, group, starts, record, progress)
        except OSError as e:  # a local store's area keeps the blocks written (a URL store's part uploads none)
            if is_disk_full(e):
                raise xg.disk_full(out, ex, set(plan["done"]) | done) from None
            raise
    rows = sum(min(r0 + plan["batch_size"], plan["n_rows"]) - r0 for r0 in starts)
    return {"shard": index, "blocks": starts, "rows": rows, "seconds": round(time.perf_counter() - t0, 3)}


def finalize(store: Store, conf: dict, inputs: dict, plan: dict, shards: list[dict]) -> dict:
    """Check that every row block was written, then publish the output with its manifest."""
    if "cached" in plan:
        return plan["cached"]
    key, n, bs = plan["key"], plan["n_rows"], plan["batch_size"]
    written = set(plan["done"]) | {r0 for s in shards for r0 in s["blocks"]}
    missing = sorted(set(range(0, n, bs)) - written)
    if missing:
        raise StoreError(f"{plan['stage']}/{key}: row blocks starting at rows {missing[:5]} were not written by any "
                         f"shard; re-run the flow (finished blocks of a local store are kept)")
    record = stage_record(plan["version"], conf, inputs, time.time() - plan["started"], plan["info"])
    record["shards"] = [{k: s[k] for k in ("shard", "rows", "seconds")} for s in shards]
    m = store.publish_shared(plan["stage"], key, plan["staging"], record, drop=BOOKKEEPING)
    m["cached"] = False
    return m
