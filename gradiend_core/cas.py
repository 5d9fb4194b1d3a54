"""Content-addressed stage outputs: `<store>/<stage>/<key>/` with a `manifest.json`.

A stage's key hashes exactly what determines its output: the stage name, the stage code version,
the canonical config slice it reads, and the keys of its upstream outputs. An output is built in a
hidden staging directory and published by one atomic rename, so a reader never sees half an output;
its manifest lists every file with size and sha256 so corruption or deletion is detected and the
stage recomputed instead of silently reused.

`open_store` opens a local directory (ArtifactStore) or a store at an fsspec URL shared by several
hosts (remote_store.RemoteStore, with a local cache per host); both have the same interface.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import StoreError
from .io import _json_default, atomic_write_text, canonical_json, known_sha256, read_json, sha256_bytes, sha256_file

MANIFEST = "manifest.json"
KEY_LEN = 20


def stage_key(stage: str, version: str, config: Any, upstream: dict[str, str]) -> str:
    """Recipe hash of a stage output (hex, KEY_LEN chars)."""
    recipe = {"stage": stage, "version": version, "config": config, "upstream": dict(sorted(upstream.items()))}
    return sha256_bytes(canonical_json(recipe).encode())[:KEY_LEN]


def file_entries(root: Path) -> dict[str, dict]:
    """relative path -> {size, sha256, mtime_ns} for every regular file below root.

    A file hashed by its writer (io.remember_digest) and unchanged since is not read again; the
    others are hashed on all cores (hashlib releases the GIL): a 2.4 GB gradient store takes half
    the time to publish on this 2-core machine.
    """
    from concurrent.futures import ThreadPoolExecutor

    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST]
    with ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1) or 1) as pool:
        digests = list(pool.map(lambda p: known_sha256(p, forget=True), files))
    out = {}
    for p, digest in zip(files, digests):
        st = p.stat()
        out[p.relative_to(root).as_posix()] = {"size": st.st_size, "sha256": digest, "mtime_ns": st.st_mtime_ns}
    return out


def open_store(location: str | os.PathLike, cache: str | os.PathLike | None = None) -> "ArtifactStore":
    """The store at a local directory, or at an fsspec URL (`file://`, `s3://`, `memory://`...) with a
    local cache on this host (`cache`, else $GRADIEND_FLOW_CACHE, else ~/.cache/gradiend-flow)."""
    from .remote_store import RemoteStore, is_url

    return RemoteStore(str(location), cache) if is_url(str(location)) else ArtifactStore(Path(location))


@dataclass
class ArtifactStore:
    """A directory of content-addressed stage outputs (local path)."""

    root: Path
    remote = False  # outputs live at `root` itself (RemoteStore: at a URL, `root` is the local cache)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()

    # ---- layout -------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        """What the user named: the directory (a URL for a RemoteStore)."""
        return str(self.root)

    def path(self, stage: str, key: str) -> Path:
        """Where an output is (or will be) on this host."""
        return self.root / stage / key

    def where(self, stage: str, key: str) -> str:
        """Where an output lives in the store (a URL for a RemoteStore)."""
        return str(self.path(stage, key))

    def manifest(self, stage: str, key: str) -> dict | None:
        p = self.path(stage, key) / MANIFEST
        try:
            return read_json(p)
        except (FileNotFoundError, ValueError):
            return None

    def check_writable(self) -> None:
        """Fail early (before any work) when the store cannot be written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise StoreError(f"store {self.root} is not writable ({e.strerror}); "
                             f"pass --store with a writable directory") from None

    # ---- integrity ----------------------------------------------------------------------------
    def problems(self, stage: str, key: str, deep: bool = False) -> list[str]:
        """What is wrong with an output ([] = valid). Shallow: size + mtime, rehash changed files."""
        d = self.path(stage, key)
        m = self.manifest(stage, key)
        if m is None:
            return [f"{stage}/{key}: no manifest"]
        out = []
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

    def is_valid(self, stage: str, key: str) -> bool:
        return not self.problems(stage, key)

    def status(self, stage: str, key: str) -> str:
        """cached | missing | broken (for `gradiend-flow status`)."""
        if not self.problems(stage, key):
            return "cached"
        return "missing" if self.manifest(stage, key) is None else "broken"

    # ---- building and publishing -------------------------------------------------------------
    def lock(self, stage: str, key: str):
        """Exclusive inter-process lock for one output, so concurrent runs compute it once."""
        return file_lock(self.root / ".locks" / f"{stage}-{key}.lock")

    def staging_dir(self, stage: str, key: str) -> Path:
        d = self.root / stage / f".staging-{key}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def leftover_staging(self, stage: str, key: str) -> list[Path]:
        """Staging dirs of this key left by dead runs. Only meaningful while holding the key's lock:
        staging dirs are created under the lock and an fcntl lock dies with its process."""
        d = self.root / stage
        return sorted(d.glob(f".staging-{key}-*")) if d.is_dir() else []

    def publish(self, stage: str, key: str, staging: Path, record: dict,
                remote_files: dict | None = None, remote_staging: str | None = None) -> dict:
        """Write the manifest into `staging` and rename it to the final path (replacing a broken one)."""
        if remote_files:
            raise StoreError(f"{stage}/{key}: files uploaded to a remote staging prefix cannot be published "
                             f"into the local store {self.root}; use a URL --store for multi-host shards")
        manifest = {**record, "stage": stage, "key": key, "files": file_entries(staging),
                    "published_at": time.time()}
        # insertion order is kept (no sort_keys), so a manifest read back from disk equals the one
        # returned here: stages that read an ordered dict from their inputs' info (e.g. the classes,
        # first = label +1) see the same order whether the input was just built or reused
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2, default=_json_default) + "\n")
        manifest["path"] = str(replace_dir(staging, self.path(stage, key)))
        return manifest

    def load(self, stage: str, key: str) -> dict:
        m = self.manifest(stage, key)
        if m is None:
            raise StoreError(f"no output {stage}/{key} in {self.root}; run the flow first")
        m["path"] = str(self.path(stage, key))
        return m

    def localize(self, manifest: dict) -> dict:
        """An input's manifest with `path` on this host (a local store's files are already here)."""
        return manifest

    def fetch(self, stage: str, key: str) -> Path:
        """Local directory of a published output (a RemoteStore downloads and verifies it first)."""
        return Path(self.load(stage, key)["path"])

    # ---- listing, cleanup -------------------------------------------------------------------------
    def outputs(self) -> Iterator[tuple[str, str]]:
        if not self.root.exists():
            return
        for sd in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for kd in sorted(p for p in sd.iterdir() if p.is_dir() and not p.name.startswith(".")):
                yield sd.name, kd.name

    def find(self, key: str) -> tuple[str, str]:
        """(stage, key) for a full key or a unique prefix of one."""
        hits = [(s, k) for s, k in self.outputs() if k.startswith(key)]
        if not hits:
            raise StoreError(f"no output with key '{key}' in {self.location}; see `gradiend-flow status`")
        if len(hits) > 1:
            raise StoreError(f"key prefix '{key}' is ambiguous ({len(hits)} outputs); give more characters")
        return hits[0]

    def leftovers(self) -> list[Path]:
        """Staging, shard scratch and trash directories of killed runs."""
        if not self.root.exists():
            return []
        return sorted(p for sd in self.root.iterdir() if sd.is_dir() and not sd.name.startswith(".")
                      for p in sd.iterdir() if p.name.startswith((".staging-", ".shard-", ".trash-")))

    def remove_leftover(self, item) -> None:
        shutil.rmtree(item, ignore_errors=True)

    def remove(self, stage: str, key: str) -> None:
        shutil.rmtree(self.path(stage, key), ignore_errors=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An fcntl lock: exclusive between processes and between threads (each opens its own descriptor);
    the kernel drops it when its process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def replace_dir(staging: Path, final: Path) -> Path:
    """Rename `staging` to `final`; an existing (corrupted or partial) `final` is moved aside first."""
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staging, final)
    return final


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
