"""The store contract: what every store of stage outputs guarantees, whatever holds the bytes.

An output is named by (stage, key): the key hashes exactly what determines its content (`stage_key`).
It lives at `<store>/<stage>/<key>/` as its files plus `manifest.json`, which lists every file
({size, sha256, mtime_ns}) and records how the output was built (version, config, upstream keys,
seconds, versions, info, stage, key, published_at).

Words used below:
- published: the manifest is there. The manifest is the commit marker: a store makes it visible only
  after every file it lists, so a reader that finds a manifest finds the whole output (or a damaged
  one, which `problems` reports), never a half-written one.
- valid: published, and every listed file is present with the listed size and sha256.
- this host: `root`, the directory where this process builds and reads outputs (a local store: the
  store itself; a URL store: this host's cache of it). Stages read and write local files only.
- staging dir: a hidden local directory one output is built in, before `publish` makes it visible.

Every store implements all abstract methods; callers use only this interface and never ask which
kind of store they have.
"""
from __future__ import annotations

import abc
import contextlib
import re
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

from ..errors import StoreError
from ..io import canonical_json, sha256_bytes

MANIFEST = "manifest.json"
KEY_LEN = 20


def stage_key(stage: str, version: str, config: Any, upstream: dict[str, str]) -> str:
    """Recipe hash of a stage output (hex, KEY_LEN chars): stage, code version, config slice, upstream keys."""
    recipe = {"stage": stage, "version": version, "config": config, "upstream": dict(sorted(upstream.items()))}
    return sha256_bytes(canonical_json(recipe).encode())[:KEY_LEN]


def check_part(part: str) -> str:
    """A part name of a shared build: letters, digits, '_', '-', '.' (it names files and directories)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", part):
        raise StoreError(f"part name '{part}' is not allowed; use letters, digits, '_', '-' and '.' only")
    return part


class SharedStaging(NamedTuple):
    """A staging area several tasks build one output in (see Store.shared_staging)."""

    id: str     # JSON-able name of the area: pass it to part_workspace and publish_shared
    path: Path  # the local directory the coordinating step writes the files every part needs into


class Store(abc.ABC):
    """A store of content-addressed stage outputs. See the module docstring for the words used."""

    root: Path  # this host's directory of the store

    # ---- layout ---------------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def location(self) -> str:
        """What the user named, in a form `open_store` accepts on any host (a directory, made
        absolute, or a URL)."""

    @abc.abstractmethod
    def path(self, stage: str, key: str) -> Path:
        """The local directory of an output on this host (its files are there once `load` returned)."""

    @abc.abstractmethod
    def where(self, stage: str, key: str) -> str:
        """Where an output lives in the store, for people (a directory, or a URL)."""

    @abc.abstractmethod
    def check_writable(self) -> None:
        """Raise StoreError, before any work, when outputs could not be built or published here, or
        when the location is not a store and cannot become one (a file, a directory of other files);
        else make it a store: write its marker (marker.py) unless it has one."""

    @abc.abstractmethod
    def state(self) -> str:
        """What the location is (marker.py): STORE (marker), LEGACY (a store made before markers),
        NEW (missing or empty: `check_writable` makes it a store), MISSING, NOT_A_DIR or FOREIGN.
        Reads only."""

    def check_store(self) -> None:
        """StoreError (one line, nothing changed) unless the location is a store: what gc, verify,
        status and show call before reading or deleting anything."""
        from .marker import LEGACY, STORE, refusal

        state = self.state()
        if state not in (STORE, LEGACY):
            raise StoreError(refusal(self.location, state))

    # ---- reading (never writes the published outputs) -------------------------------------------
    @abc.abstractmethod
    def manifest(self, stage: str, key: str) -> dict | None:
        """The published manifest (None when not published). Reads the manifest only."""

    @abc.abstractmethod
    def status(self, stage: str, key: str) -> str:
        """'cached' | 'missing' (no manifest) | 'broken' (a listed file is missing or has another size;
        a local store also re-hashes files whose mtime changed since publishing).

        Reads only: never downloads, never writes or deletes anything, on this host or in the store.
        A URL store sees a same-size rewrite only through `fingerprint` or `problems`."""

    @abc.abstractmethod
    def fingerprint(self, stage: str, key: str) -> str | None:
        """None unless status is 'cached'; else a short digest of the manifest and of what status read
        to decide (each file's size and mtime; a URL store: its listing entry, e.g. size, mtime, ETag).

        So it changes when the output is republished and when one of its files is rewritten in place.
        Same guarantee as status: reads only, never downloads, never writes."""

    @abc.abstractmethod
    def verified(self, stage: str, key: str) -> bool:
        """True when the output is published, its files are unchanged since this host last verified them
        (a local store: status is 'cached'; a URL store: also every file's listing entry equals the one
        this host downloaded and hash-checked), so using it needs no download and no re-check.

        Reads only, like status. False for a URL store's output this host never fetched."""

    @abc.abstractmethod
    def problems(self, stage: str, key: str, deep: bool = False) -> list[str]:
        """What is wrong with the output for this host ([] = valid), one line per problem.

        Checks every listed file's presence, size and sha256. Shallow: only files that changed since
        they were last verified are hashed again (a local store: mtime differs from the manifest's);
        a URL store downloads into this host's cache what is missing here or changed there (its
        listing entry), checking each digest. Deep: every file is hashed (downloaded) again.
        May write this host's cache; never writes the published output."""

    def is_valid(self, stage: str, key: str) -> bool:
        return not self.problems(stage, key)

    @abc.abstractmethod
    def load(self, stage: str, key: str) -> dict:
        """The manifest with `path`: the output's files are there on this host.

        StoreError when the output is not published. A local store reads the manifest only (call
        `problems` to check the files); a URL store downloads and verifies what this host lacks and
        raises StoreError when it cannot."""

    @abc.abstractmethod
    def localize(self, manifest: dict) -> dict:
        """An input's manifest (returned by load or publish, possibly on another host) with `path` on
        this host; a URL store downloads the input first (as `load`)."""

    def fetch(self, stage: str, key: str) -> Path:
        """The local directory of a published output, its files on this host (see `load`)."""
        return Path(self.load(stage, key)["path"])

    # ---- building one output --------------------------------------------------------------------
    @abc.abstractmethod
    def lock(self, stage: str, key: str) -> contextlib.AbstractContextManager:
        """Exclusive lock for one output between the threads and processes of this host; the kernel
        drops it when its process dies. Builders hold it from checking the output to publishing it,
        so concurrent runs compute an output once. Hosts sharing a URL store do not exclude each
        other: builds are deterministic, so they upload identical bytes, and every download is
        checked against the manifest that won."""

    @abc.abstractmethod
    def staging(self, stage: str, key: str, resumable: bool = False) -> Path:
        """A local directory (on this host, below root) to build one output in; call under the key's
        lock, so every other staging dir of the key belongs to a dead run.

        resumable: the newest dead run's staging dir is adopted (renamed to the new one, its files
        kept, so the build can skip the work it finds recorded there). Every other dead run's dir is
        deleted; without resumable the new dir is empty. On a failed build the caller deletes it, unless
        the build is resumable: then it is kept for the next run to adopt (gc lists it as a leftover)."""

    @abc.abstractmethod
    def publish(self, stage: str, key: str, staging: Path, record: dict) -> dict:
        """Publish a staging dir (from `staging`) as the output and return its manifest with `path`.

        The manifest is `record` plus stage, key, files (every file of the staging dir: size, sha256,
        mtime_ns) and published_at. Atomic: readers see the previous state (nothing, or a broken
        output, which is replaced) or the whole new output. A local store writes the manifest into
        the staging dir and renames the dir into place; a URL store uploads every file first and the
        manifest last, and the staging dir becomes this host's verified copy. Caller holds the lock."""

    # ---- one output built by several tasks (possibly on several hosts) --------------------------
    @abc.abstractmethod
    def shared_staging(self, stage: str, key: str) -> contextlib.AbstractContextManager[SharedStaging]:
        """Open a staging area several tasks build one output in: yields (id, path), where the
        coordinating step writes the files every part needs. Caller holds the key's lock until
        publish_shared (the area outlives each step).

        A local store (a file system every worker sees): the area is a staging dir as
        `staging(resumable=True)`, so a dead run's files are kept and `path` is the area itself.
        A URL store: `path` is a private scratch dir whose files are uploaded, on a clean exit, to
        a fresh remote staging prefix (a dead run's prefix is left to gc); nothing is resumed."""

    @abc.abstractmethod
    def part_workspace(self, stage: str, key: str, staging: str,
                       part: str) -> contextlib.AbstractContextManager[Path]:
        """A local directory where one task writes its part of a shared build (`staging`: the id from
        shared_staging; `part`: a name unique among the parts, see `check_part`).

        It holds the shared files; parts write disjoint new files and do not change the shared ones.
        A local store: the area itself (what a part writes is there at once, so a killed part's
        finished files survive for a resumed run). A URL store: a private scratch dir pre-filled
        with the shared files (digests checked); on a clean exit the part's new files are uploaded
        to the staging prefix with a record of their digests; on an error nothing is uploaded."""

    @abc.abstractmethod
    def publish_shared(self, stage: str, key: str, staging: str, record: dict,
                       drop: Sequence[str] = ()) -> dict:
        """Publish everything the shared files and the parts wrote as the output, exactly like
        `publish` (files first, manifest last; the files and digests a one-task build would list).

        drop: glob patterns (fnmatch, matched against paths relative to the output root) of build
        bookkeeping, e.g. progress records, that are not part of the output. Parts must write
        disjoint files: where a store can see that two parts wrote one file with different bytes (a
        URL store: their recorded digests differ) it raises StoreError. The area is gone afterwards."""

    # ---- listing and cleanup --------------------------------------------------------------------
    @abc.abstractmethod
    def outputs(self) -> Iterator[tuple[str, str]]:
        """(stage, key) of every output directory in the store, published or not, sorted."""

    def find(self, key: str) -> tuple[str, str]:
        """(stage, key) for a full key or a unique prefix of one."""
        hits = [(s, k) for s, k in self.outputs() if k.startswith(key)]
        if not hits:
            raise StoreError(f"no output with key '{key}' in {self.location}; see `gradiend-flow status`")
        if len(hits) > 1:
            raise StoreError(f"key prefix '{key}' is ambiguous ({len(hits)} outputs); give more characters")
        return hits[0]

    @abc.abstractmethod
    def leftovers(self) -> list[str]:
        """What killed runs left: staging dirs, scratch dirs, trash (local paths) and, for a URL store,
        remote staging prefixes (as URLs). Deleting them is safe only while no run uses the store."""

    @abc.abstractmethod
    def remove_leftover(self, item: str) -> None:
        """Delete one entry of `leftovers()` (a missing one is no error). StoreError when a running
        build of its key holds the key's lock (nothing deleted), OSError when something could not be
        deleted (what could be is gone)."""

    @abc.abstractmethod
    def remove(self, stage: str, key: str) -> None:
        """Delete an output: unpublish it first (the manifest goes first, so no reader trusts a
        half-deleted output), then its files, in the store and on this host. StoreError when a
        running build holds the key's lock (nothing deleted), OSError when something could not be
        deleted."""
