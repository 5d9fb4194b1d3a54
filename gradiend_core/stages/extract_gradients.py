"""extract-gradients: per-example factual and alternative gradients streamed into a Zarr store.

One task (`build`), or with `runner.extract_shards` > 1 row shards (extract_shards.py); both run the
same engine (gradiend_core.extraction) and publish the same bytes under the same key. With pre-pruning
on (the default) only the kept dims are stored; see pre_prune.py for why. The pairs of a suite are
extracted in one pass (extract_shared.py), again with the same bytes under the same keys.
"""
from __future__ import annotations

from pathlib import Path

from .. import extraction as xg
from ..reports import extract_gradients as report
from . import extract_shards, extract_shared
from .common import placement, section
from .declaration import Report, Share, Split, Stage, needs
from .runner import is_disk_full


def config_slice(cfg) -> dict:
    """The extract section, and of pre_prune what decides the stored bytes (nothing when it is off): its
    settings and the pair whose transitions the sample is drawn from."""
    # the pre-pruning sample is drawn from the GRADIEND pair's transitions
    pre = {**section(cfg.pre_prune), "pair": list(cfg.pair())} if cfg.pre_prune.enabled else {"enabled": False}
    return {"extract": section(cfg.extract), "pre_prune": pre, **placement(cfg)}


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    ex = xg.setup(conf, inputs, out, progress)
    group, done = xg.start(out, ex)  # a killed run's staging dir: the blocks it wrote are kept

    def record(r0: int) -> None:
        done.add(r0)
        xg.write_progress(out, ex.n, ex.pmap.input_dim, done)

    try:
        xg.extract_blocks(ex, group, [r0 for r0 in ex.blocks() if r0 not in done], record, progress,
                          hash_root=out / "gradients.zarr")
    except OSError as e:  # the staging dir is kept (a resumable stage): say what is kept, what the rest needs
        if is_disk_full(e):
            raise xg.disk_full(out, ex, done) from None
        raise
    return xg.finish(out, ex)


NAME = "extract-gradients"
# 3: per-example gradients from one padded batch pass (per_example.py); 4: pre-pruning importance from
# the gradient of the sample's mean loss (float32 rounding, hence near-ties, differ)
# 5: test sentences with another word masked (neutral_training_masked rows)
VERSION = "6"  # 6: float16 scaled by a power of two per row and 4096 columns, scales stored beside (grad_store)
STAGE = Stage(name=NAME, version=VERSION, sections=("extract", "pre_prune"), build=build, conf=config_slice,
              inputs=(needs("model", "prepare-model"), needs("data", "create-data")), resumable=True,
              split=Split(extract_shards.prepare, extract_shards.shard, extract_shards.finalize,
                          count=lambda cfg: cfg.runner.extract_shards, units="blocks"),
              report=Report(artifacts=report.artifacts),
              share=Share(extract_shared.signature, extract_shared.build))
