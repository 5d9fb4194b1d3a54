"""Keep freed memory in the process heap, so per-example gradients do not page-fault on every row.

Every backward pass allocates parameter-sized gradients (tens of MB each on a MiniLM, 47 MB for its
word-embedding matrix). glibc serves blocks above its mmap threshold (at most 32 MiB) with a fresh
mmap and returns them to the kernel on free, so the next row's gradient is page-faulted and
zero-filled again by the kernel: measured on the default MiniLM (`bench/extraction_limit.py`, one
thread), 3.6 M minor faults for 32 rows and 0.52 s/row, of which 6.5 s system time; with the heap
kept, 0.15 M faults and 0.12 s/row (4.4x). Peak RSS is unchanged (the same blocks are reused).

`reuse_freed_memory()` switches glibc to the heap for every size and keeps up to 1 GiB of freed top
of heap instead of trimming it. It is process-wide and idempotent; elsewhere than glibc (macOS,
musl) it does nothing. Set GRADIEND_MALLOC_TUNING=0 to leave the allocator alone.

It also keeps every thread on the main heap (one arena). Prefect runs tasks on worker threads, and a
thread's own glibc arena serves a block larger than its 64 MiB heaps (a micro-batch of gradient rows,
a block of stored rows) with a fresh mmap whatever M_MMAP_MAX says, so those blocks page-fault on
every use again: extraction on a worker thread ran at 64 ms/row with 1.78 M minor faults, at
49.8 ms/row with 0.32 M in one arena (the same as on the main thread; 330 rows of the compare bench).
Arenas are given to threads when they first allocate, so this must run before the task threads start:
the CLI and `run_experiment` call it first (flows/env.py), and `child_environment()` carries the same
setting (MALLOC_ARENA_MAX=1) to processes started later, such as local Dask or Ray workers.
`release_freed_memory()` hands the free heap back to the kernel (malloc_trim); the stage runner calls
it after every stage, so what one stage freed does not count against the next one's peak.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = 1 << 30

_done: bool | None = None
_libc = None


def _glibc():
    """libc with mallopt/malloc_trim, or None (not Linux/glibc, or tuning switched off)."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux") and os.environ.get("GRADIEND_MALLOC_TUNING", "1") != "0":
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                _libc = lib
            except (OSError, AttributeError):  # not glibc
                pass
    return _libc or None


def reuse_freed_memory() -> bool:
    """Tune glibc malloc once per process; True when the tuning is in effect."""
    global _done
    if _done is None:
        libc = _glibc()
        _done = bool(libc) and all(libc.mallopt(k, v) for k, v in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                                                                      (M_ARENA_MAX, 1)))
        if libc and not _done:
            log.debug("glibc mallopt refused the tuning; per-row gradients will page-fault")
    return _done


def child_environment() -> dict[str, str]:
    """Environment variables that give processes started from here the same arena setting from their
    first allocation (glibc reads MALLOC_ARENA_MAX at start-up); empty when tuning is off."""
    return {"MALLOC_ARENA_MAX": "1"} if _glibc() else {}


def release_freed_memory() -> None:
    """Return free heap pages to the kernel (no-op without glibc)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)
