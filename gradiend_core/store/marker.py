"""What makes a directory a store: a marker file written when the store is created, so commands that
delete (gc) or report (verify, status, show) never mistake another directory for one.

A directory is recognised as a store when it holds the marker `.gradiend-store`, or (a store created
before markers existed) when it has the store's layout: a published output, i.e. a
`<stage>/<key>/manifest.json` that names that stage and key, or a lock file `.locks/<stage>-<key>.lock`
that every build takes. Such a store gets its marker on the next write (`run`, `gc`). A new
directory, or an existing empty one, becomes a store on the first write; any other directory is
refused, so `--store .` in a project is never filled with, or emptied of, stage directories.
"""
from __future__ import annotations

import json
import re

MARKER = ".gradiend-store"
KEY_RE = re.compile(r"[0-9a-f]{20}")  # an output's key (contract.KEY_LEN hex chars)
LOCK_RE = re.compile(r".+-[0-9a-f]{20}\.lock")

# what a directory is, for the store commands
STORE, LEGACY, NEW, MISSING, NOT_A_DIR, FOREIGN = "store", "legacy", "new", "missing", "not-a-dir", "foreign"


def marker_bytes() -> bytes:
    from .. import __version__

    return (json.dumps({"format": 1, "created_by": f"gradiend-flow {__version__}"}, sort_keys=True) + "\n").encode()


def is_key(name: str) -> bool:
    return bool(KEY_RE.fullmatch(name))


def names_itself(manifest: dict | None, stage: str, key: str) -> bool:
    """A manifest found at `<stage>/<key>/` that was published there (not some other JSON file)."""
    return isinstance(manifest, dict) and manifest.get("stage") == stage and manifest.get("key") == key


def refusal(location: str, state: str) -> str:
    """The one-line reason a store command refuses `location` (state: not STORE or LEGACY)."""
    fix = "pass --store with the directory `gradiend-flow run` wrote to"
    return {
        MISSING: f"store {location} does not exist; {fix}",
        NOT_A_DIR: f"--store {location} is a file, not a store directory; {fix}",
        NEW: f"{location} is empty: not a gradiend-flow store (it has no {MARKER}); {fix}",
        FOREIGN: f"{location} is not a gradiend-flow store (no {MARKER} and no stage outputs in it); "
                 f"nothing was changed; {fix}",
    }[state]


def claim_refusal(location: str, state: str) -> str:
    """The one-line reason `run` does not create a store at `location`."""
    if state == NOT_A_DIR:
        return f"--store {location} is a file, not a directory; pass --store with a new or empty directory"
    return (f"{location} is not empty and not a gradiend-flow store (no {MARKER} and no stage outputs in it); "
            f"pass --store with a new or empty directory, or an existing store")
