"""Content-addressed stage outputs: `<store>/<stage>/<key>/` with a `manifest.json`.

A stage's key hashes exactly what determines its output (stage name, code version, config slice,
upstream keys). Every store implements one contract (`contract.Store`): atomic publish with the
manifest as commit marker, integrity checks against the manifest, per-key locks, staging dirs
(resumable, or shared by several tasks), cleanup. Two implementations:

- `LocalStore` (local.py): a directory on this host (or a file system every worker mounts).
- `UrlStore` (url.py): an fsspec URL several hosts share, with a LocalStore cache on each host.

`open_store` picks one from what the user named; callers never ask which one they got.
"""
from __future__ import annotations

import os
from pathlib import Path

from .contract import KEY_LEN, MANIFEST, SharedStaging, Store, stage_key
from .files import file_entries
from .local import LocalStore
from .url import ENV_CACHE, UrlStore, is_url

__all__ = ["ENV_CACHE", "KEY_LEN", "MANIFEST", "LocalStore", "SharedStaging", "Store", "UrlStore", "file_entries",
           "is_url", "open_store", "stage_key"]


def open_store(location: str | os.PathLike, cache: str | os.PathLike | None = None) -> Store:
    """The store at a local directory, or at an fsspec URL (`file://`, `s3://`, `memory://`...) with a
    local cache on this host (`cache`, else $GRADIEND_FLOW_CACHE, else ~/.cache/gradiend-flow)."""
    if is_url(str(location)):
        return UrlStore(str(location), cache)
    return LocalStore(Path(location))
