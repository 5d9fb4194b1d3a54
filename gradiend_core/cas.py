"""Content-addressed stage outputs: `<store>/<stage>/<key>/` with a `manifest.json`.

A stage's key hashes exactly what determines its output: the stage name, the stage code version,
the canonical config slice it reads, and the keys of its upstream outputs. An output is built in a
hidden staging directory and published by one atomic rename, so a reader never sees half an output;
its manifest lists every file with size and sha256 so corruption or deletion is detected and the
stage recomputed instead of silently reused.
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
from .io import _json_default, atomic_write_text, canonical_json, read_json, sha256_bytes, sha256_file

MANIFEST = "manifest.json"
KEY_LEN = 20


def stage_key(stage: str, version: str, config: Any, upstream: dict[str, str]) -> str:
    """Recipe hash of a stage output (hex, KEY_LEN chars)."""
    recipe = {"stage": stage, "version": version, "config": config, "upstream": dict(sorted(upstream.items()))}
    return sha256_bytes(canonical_json(recipe).encode())[:KEY_LEN]


def _file_entries(root: Path) -> dict[str, dict]:
    """relative path -> {size, sha256, mtime_ns} for every regular file below root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            st = p.stat()
            out[p.relative_to(root).as_posix()] = {
                "size": st.st_size, "sha256": sha256_file(p), "mtime_ns": st.st_mtime_ns}
    return out


@dataclass
class ArtifactStore:
    """A directory of content-addressed stage outputs (local path)."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()

    # ---- layout -------------------------------------------------------------------------------
    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

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

    # ---- building and publishing -------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Exclusive inter-process lock for one output, so concurrent runs compute it once."""
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{stage}-{key}.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def staging_dir(self, stage: str, key: str) -> Path:
        d = self.root / stage / f".staging-{key}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        return d

    def leftover_staging(self, stage: str, key: str) -> list[Path]:
        """Staging dirs of this key left by dead runs. Only meaningful while holding the key's lock:
        staging dirs are created under the lock and an fcntl lock dies with its process."""
        d = self.root / stage
        return sorted(d.glob(f".staging-{key}-*")) if d.is_dir() else []

    def publish(self, stage: str, key: str, staging: Path, record: dict) -> dict:
        """Write the manifest into `staging` and rename it to the final path (replacing a broken one)."""
        manifest = {**record, "stage": stage, "key": key, "files": _file_entries(staging),
                    "published_at": time.time()}
        # insertion order is kept (no sort_keys), so a manifest read back from disk equals the one
        # returned here: stages that read an ordered dict from their inputs' info (e.g. the classes,
        # first = label +1) see the same order whether the input was just built or reused
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2, default=_json_default) + "\n")
        final = self.path(stage, key)
        if final.exists():  # a corrupted or partial old output: move aside, then drop
            trash = final.with_name(f".trash-{key}-{uuid.uuid4().hex[:8]}")
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, final)
        manifest["path"] = str(final)
        return manifest

    def load(self, stage: str, key: str) -> dict:
        m = self.manifest(stage, key)
        if m is None:
            raise StoreError(f"no output {stage}/{key} in {self.root}; run the flow first")
        m["path"] = str(self.path(stage, key))
        return m

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
            raise StoreError(f"no output with key '{key}' in {self.root}; see `gradiend-flow status`")
        if len(hits) > 1:
            raise StoreError(f"key prefix '{key}' is ambiguous ({len(hits)} outputs); give more characters")
        return hits[0]

    def leftovers(self) -> list[Path]:
        """Staging and trash directories of killed runs."""
        if not self.root.exists():
            return []
        return sorted(p for sd in self.root.iterdir() if sd.is_dir() and not sd.name.startswith(".")
                      for p in sd.iterdir() if p.name.startswith((".staging-", ".trash-")))

    def remove(self, stage: str, key: str) -> None:
        shutil.rmtree(self.path(stage, key), ignore_errors=True)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
