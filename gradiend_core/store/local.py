"""A store in a local directory (or any file system every worker mounts): `<root>/<stage>/<key>/`.

An output is built in a hidden staging dir next to its final place and published by one rename of
the whole directory, the manifest already inside it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import StoreError
from ..io import sha256_file
from .contract import MANIFEST, SharedStaging, Store, check_part
from ..io import atomic_write_bytes
from .files import (file_entries, file_lock, fingerprint_of, matches, read_manifest, remove_tree, replace_dir,
                    write_manifest)
from .marker import (FOREIGN, LEGACY, LOCK_RE, MARKER, MISSING, NEW, NOT_A_DIR, STORE, claim_refusal, is_key,
                     marker_bytes, names_itself)

log = logging.getLogger("gradiend_core.store")

STAGING = ".staging-"  # <stage>/.staging-<key>-<host>-<pid>-<random>: a build in progress (or a dead one)
SCRATCH = ".shard-"    # <stage>/.shard-<key>-<label>-<random>: one step's private dir, never adopted
TRASH = ".trash-"      # <stage>/.trash-<key>-<random>: a replaced output being deleted


@dataclass
class LocalStore(Store):
    """A directory of content-addressed stage outputs on this host."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()

    # ---- layout ---------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def where(self, stage: str, key: str) -> str:
        return str(self.path(stage, key))

    def check_writable(self) -> None:
        state = self.state()
        if state in (NOT_A_DIR, FOREIGN):
            raise StoreError(claim_refusal(str(self.root), state))
        self.probe_writable()
        if state != STORE:  # a new store, or one made before markers: mark it (atomic)
            try:
                atomic_write_bytes(self.root / MARKER, marker_bytes())
            except OSError as e:
                raise StoreError(f"store {self.root} is not writable ({e.strerror}); "
                                 f"pass --store with a writable directory") from None

    def probe_writable(self) -> None:
        """StoreError unless the directory exists (it is created) and a file can be written in it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"store {self.root} is not writable ({e.strerror}); "
                             f"pass --store with a writable directory") from None

    def state(self) -> str:
        root = self.root
        if not root.exists():
            return MISSING
        if not root.is_dir():
            return NOT_A_DIR
        if (root / MARKER).is_file():
            return STORE
        if not any(root.iterdir()):
            return NEW
        return LEGACY if self._has_layout() else FOREIGN

    def _has_layout(self) -> bool:
        """A published output that names its own place, or a build's lock file (marker.py)."""
        locks = self.root / ".locks"
        if locks.is_dir() and any(LOCK_RE.fullmatch(p.name) for p in locks.iterdir()):
            return True
        for sd in self.root.iterdir():
            if sd.is_dir() and not sd.name.startswith("."):
                for kd in sd.iterdir():
                    if is_key(kd.name) and names_itself(read_manifest(kd / MANIFEST), sd.name, kd.name):
                        return True
        return False

    # ---- reading --------------------------------------------------------------------------------
    def manifest(self, stage: str, key: str) -> dict | None:
        return read_manifest(self.path(stage, key) / MANIFEST)

    def _file_problems(self, stage: str, key: str, m: dict, deep: bool) -> list[str]:
        """Missing files, other sizes; files whose mtime changed (every file if deep) are re-hashed."""
        d, out = self.path(stage, key), []
        for rel, meta in m.get("files", {}).items():
            p = d / rel
            try:
                st = p.stat()
            except FileNotFoundError:
                out.append(f"{stage}/{key}/{rel}: missing")
                continue
            if st.st_size != meta["size"]:
                out.append(f"{stage}/{key}/{rel}: size {st.st_size} != {meta['size']}")
            elif (deep or st.st_mtime_ns != meta.get("mtime_ns")) and sha256_file(p) != meta["sha256"]:
                out.append(f"{stage}/{key}/{rel}: content digest mismatch")
        return out

    def problems(self, stage: str, key: str, deep: bool = False) -> list[str]:
        m = self.manifest(stage, key)
        if m is None:
            return [f"{stage}/{key}: no manifest"]
        return self._file_problems(stage, key, m, deep)

    def status(self, stage: str, key: str) -> str:
        m = self.manifest(stage, key)
        if m is None:
            return "missing"
        return "broken" if self._file_problems(stage, key, m, deep=False) else "cached"

    def verified(self, stage: str, key: str) -> bool:
        return self.status(stage, key) == "cached"  # its files are here: what status checks is all there is

    def fingerprint(self, stage: str, key: str) -> str | None:
        m = self.manifest(stage, key)
        if m is None or self._file_problems(stage, key, m, deep=False):
            return None
        d = self.path(stage, key)
        seen = {}
        for rel in m["files"]:
            with contextlib.suppress(FileNotFoundError):  # (a file deleted since: the key changes anyway)
                st = (d / rel).stat()
                seen[rel] = [st.st_size, st.st_mtime_ns]
        return fingerprint_of(m, seen)

    def load(self, stage: str, key: str) -> dict:
        m = self.manifest(stage, key)
        if m is None:
            raise StoreError(f"no output {stage}/{key} in {self.root}; run the flow first")
        m["path"] = str(self.path(stage, key))
        return m

    def localize(self, manifest: dict) -> dict:
        return manifest  # the files are already on this host

    # ---- building one output --------------------------------------------------------------------
    def lock(self, stage: str, key: str, wait: bool = True):
        return file_lock(self.root / ".locks" / f"{stage}-{key}.lock", wait)

    def staging(self, stage: str, key: str, resumable: bool = False) -> Path:
        fresh = self.root / stage / f"{STAGING}{key}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        fresh.mkdir(parents=True)
        dead = [d for d in self.leftover_staging(stage, key) if d != fresh]
        adopt = max(dead, key=lambda p: p.stat().st_mtime_ns) if resumable and dead else None
        for d in dead:
            if d != adopt:  # never mistaken for results of this build
                shutil.rmtree(d, ignore_errors=True)
        if adopt is not None:
            log.warning("%s/%s: resuming the staging dir of a killed run (%s)", stage, key, adopt.name)
            fresh.rmdir()
            os.replace(adopt, fresh)
        return fresh

    def leftover_staging(self, stage: str, key: str) -> list[Path]:
        """Staging dirs of this key. Under the key's lock they all belong to dead runs: staging dirs are
        created under the lock, and an fcntl lock dies with its process."""
        d = self.root / stage
        return sorted(d.glob(f"{STAGING}{key}-*")) if d.is_dir() else []

    def scratch(self, stage: str, key: str, label: str) -> Path:
        """A private new dir below root for one step (listed by `leftovers` until removed)."""
        (self.root / stage).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{SCRATCH}{key}-{label}-", dir=self.root / stage))

    def publish(self, stage: str, key: str, staging: Path, record: dict) -> dict:
        manifest = {**record, "stage": stage, "key": key, "files": file_entries(staging),
                    "published_at": time.time()}
        write_manifest(staging, manifest)
        manifest["path"] = str(replace_dir(staging, self.path(stage, key)))
        return manifest

    # ---- one output built by several tasks ------------------------------------------------------
    @contextlib.contextmanager
    def shared_staging(self, stage: str, key: str) -> Iterator[SharedStaging]:
        area = self.staging(stage, key, resumable=True)  # a killed run's finished parts are kept
        yield SharedStaging(str(area), area)

    @contextlib.contextmanager
    def part_workspace(self, stage: str, key: str, staging: str, part: str) -> Iterator[Path]:
        check_part(part)
        yield self._area(stage, key, staging)  # every worker sees this file system: write in place

    def publish_shared(self, stage: str, key: str, staging: str, record: dict,
                       drop: Sequence[str] = ()) -> dict:
        area = self._area(stage, key, staging)
        for p in sorted(area.rglob("*")):
            if p.is_file() and matches(p.relative_to(area).as_posix(), drop):
                p.unlink()
        return self.publish(stage, key, area, record)

    def _area(self, stage: str, key: str, staging: str) -> Path:
        area = Path(staging)
        if area.parent != self.root / stage or not area.name.startswith(f"{STAGING}{key}-"):
            raise StoreError(f"{staging} is no staging area of {stage}/{key} in {self.root}; "
                             f"pass the id that shared_staging returned for this store")
        if not area.is_dir():
            raise StoreError(f"staging area {staging} is gone (published, or removed by gc); re-run the flow")
        return area

    # ---- listing and cleanup --------------------------------------------------------------------
    def outputs(self) -> Iterator[tuple[str, str]]:
        if not self.root.is_dir():
            return
        for sd in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for kd in sorted(p for p in sd.iterdir() if p.is_dir() and is_key(p.name)):
                yield sd.name, kd.name

    def leftovers(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(str(p) for sd in self.root.iterdir() if sd.is_dir() and not sd.name.startswith(".")
                      for p in sd.iterdir() if p.name.startswith((STAGING, SCRATCH, TRASH)))

    def remove_leftover(self, item: str) -> None:
        p = Path(item)
        key = p.name.split("-", 2)[1] if p.name.count("-") >= 2 else ""  # .staging-<key>-..., .shard-<key>-...
        with self.unused(p.parent.name, key, p):
            remove_tree(p)

    def remove(self, stage: str, key: str) -> None:
        with self.unused(stage, key, self.path(stage, key)):
            self.drop(stage, key)

    def drop(self, stage: str, key: str) -> None:
        """`remove` without the lock check (the caller holds `unused`)."""
        (self.path(stage, key) / MANIFEST).unlink(missing_ok=True)  # unpublished before half deleted
        remove_tree(self.path(stage, key))

    @contextlib.contextmanager
    def unused(self, stage: str, key: str, what) -> Iterator[None]:
        """Held while deleting `what`: the key's lock, unless a running build holds it (StoreError)."""
        if not is_key(key):
            yield
            return
        with self.lock(stage, key, wait=False) as held:
            if not held:
                raise StoreError(f"{what} is in use by a running build of {stage}/{key}; "
                                 f"run gc again when it has finished")
            yield
