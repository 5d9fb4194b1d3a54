"""Run one stage against the artifact store: reuse a valid output or build and publish a new one."""
from __future__ import annotations

import errno
import logging
import platform
import shutil
import time
from pathlib import Path
from typing import Callable

from ..allocator import release_freed_memory, reuse_freed_memory
from ..errors import StoreError
from ..io import human_bytes
from ..store import Store, stage_key

log = logging.getLogger("gradiend_core.stages")

ProgressFn = Callable[[float, str], None]  # (fraction done in [0, 1], message)


def upstream_keys(inputs: dict[str, dict]) -> dict[str, str]:
    return {name: m["key"] for name, m in inputs.items()}


# a config slice's entry that tells a build where to run (model.device, train.device): handed to the
# build like the rest of the slice but never hashed, so the same output is reused on any device
RUNTIME = "runtime"


def hashed(conf: dict) -> dict:
    """The part of a config slice that is hashed into the key: all of it but the RUNTIME entry."""
    return {k: v for k, v in conf.items() if k != RUNTIME}


def key_for(stage: str, version: str, conf: dict, inputs: dict[str, dict]) -> str:
    return stage_key(stage, version, hashed(conf), upstream_keys(inputs))


def _versions() -> dict:
    import torch
    import transformers

    from .. import __version__

    return {"gradiend_flow": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def run_stage(store: Store, stage: str, version: str, conf: dict, inputs: dict[str, dict],
              build: Callable[..., dict], progress: ProgressFn | None = None,
              paths: dict | None = None, resumable: bool = False) -> dict:
    """Return the stage's manifest (with `cached` and `path`), computing it only when needed.

    `conf` is hashed into the key; `paths` (where input files live) is not: the slice carries their
    content digests instead, so moving a file does not invalidate, and editing one does.

    The per-key lock makes concurrent runs of the same experiment compute each output once: the
    second run waits, then finds the published output valid and reuses it.
    """
    key = key_for(stage, version, conf, inputs)
    with store.lock(stage, key):
        problems = store.problems(stage, key)
        if not problems:
            m = store.load(stage, key)
            m["cached"] = True
            return m
        if store.manifest(stage, key) is not None:
            log.warning("recomputing %s/%s: %s", stage, key, "; ".join(problems[:3]))
        inputs = {n: store.localize(m) for n, m in inputs.items()}  # a URL store: fetch them to this host
        # a resumable build gets the staging dir of a killed run of this key, and skips its finished work
        staging = store.staging(stage, key, resumable=resumable)
        reuse_freed_memory()  # every stage allocates model-sized tensors repeatedly (see allocator.py)
        t0 = time.perf_counter()
        try:
            info = build(staging, conf, inputs, progress or (lambda f, msg="": None), paths or {})
        except BaseException as e:
            if not resumable:  # a resumable build's staging dir holds the finished work the next run resumes
                shutil.rmtree(staging, ignore_errors=True)
            elif isinstance(e, KeyboardInterrupt):  # Ctrl-C, a requested stop (stop.Stopped)
                log.info("%s/%s stopped: its finished work stays in %s for the next run", stage, key, staging)
            if is_disk_full(e):
                raise StoreError(f"no space left on the device of {store.location} while building {stage}/{key} "
                                 f"({free_space(staging)} free); free disk space and run again"
                                 + (" (it resumes from the work kept)" if resumable else "")) from None
            raise
        finally:
            release_freed_memory()  # the next stage's peak should not carry this one's free heap
        m = store.publish(stage, key, staging, stage_record(version, conf, inputs, time.perf_counter() - t0, info))
        m["cached"] = False
        return m


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def free_space(path) -> str:
    """Free space on the file system of `path` (or its nearest existing parent), for people."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return human_bytes(shutil.disk_usage(p).free)


def run_report(store: LocalStore, decl, manifest: dict) -> dict | None:
    """The report output (plots drawn from the stage's stored results) of `manifest`, drawn only when
    it is not in the store yet: its key is the stage output's key and the report code's version, so
    a plot change re-draws without re-running the stage. None when the stage draws no plots."""
    r = decl.report
    if r is None or r.draw is None:
        return None

    def draw(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
        return r.draw(inputs["output"], out)

    return run_stage(store, decl.report_stage, r.key_version(), {}, {"output": manifest}, draw)


def stage_record(version: str, conf: dict, inputs: dict[str, dict], seconds: float, info: dict) -> dict:
    """What a manifest records about how its output was built (besides its files)."""
    runtime = {RUNTIME: conf[RUNTIME]} if RUNTIME in conf else {}  # where it was asked to run
    return {"version": version, "config": hashed(conf), **runtime, "upstream": upstream_keys(inputs),
            "seconds": round(seconds, 3), "versions": _versions(), "info": info}
