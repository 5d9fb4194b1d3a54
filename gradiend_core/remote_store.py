"""A store at an fsspec URL (file://, s3://, gs://, memory://, ...) shared by several hosts.

The URL is the source of truth: `<url>/<stage>/<key>/` holds an output's files and its `manifest.json`.
Each host keeps a local cache of the outputs it builds or reads (`$GRADIEND_FLOW_CACHE/stores/<hash of
url>`, default `~/.cache/gradiend-flow`), because stages read local files (safetensors, parquet and
zarr want paths) and build into a local staging directory.

- Publishing uploads every file first and writes the manifest LAST: the manifest is the commit marker,
  so a reader never trusts a half-uploaded output. Files are written under a temporary name and
  renamed where the file system can rename atomically; object stores commit a PUT whole anyway.
- Reading compares the remote manifest and listing with what this host verified before; a file that
  is missing here or changed there (size, mtime or ETag in its listing) is downloaded and its sha256
  checked against the manifest, so a corrupted remote file is found and its output rebuilt.
- Builds are deterministic, so two hosts that build the same key at the same time upload identical
  bytes; the per-key lock stays per host. A mix of two builds that do differ (e.g. other CPUs round
  differently) cannot pass unnoticed: every download is checked against the manifest that won.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Iterator

from .cas import MANIFEST, ArtifactStore, file_entries, file_lock, replace_dir
from .errors import StoreError
from .io import _json_default, atomic_write_json, atomic_write_text, read_json, sha256_file

ENV_CACHE = "GRADIEND_FLOW_CACHE"
DEFAULT_CACHE = "~/.cache/gradiend-flow"
SYNC_DIR = ".sync"  # in the cache root: per output, what this host downloaded and verified
CHUNK = 1 << 22


def is_url(location) -> bool:
    return isinstance(location, str) and "://" in location


def cache_root(url: str, base: str | os.PathLike | None = None) -> Path:
    """This host's local copy of the store at `url` (one directory per URL)."""
    base = Path(base or os.environ.get(ENV_CACHE) or DEFAULT_CACHE).expanduser()
    return (base / "stores" / hashlib.sha256(url.encode()).hexdigest()[:16]).resolve()


def filesystem(url: str):
    """(fsspec file system, path in it) for a store URL; a clear error for unknown or missing backends."""
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:  # a known protocol whose backend package is not installed
        raise StoreError(f"store URL '{url}' needs the fsspec backend for '{protocol}://' ({e}); "
                         f"install it (e.g. pip install s3fs / gcsfs / adlfs) or use a local --store") from None
    except ValueError:
        raise StoreError(f"store URL '{url}': unknown protocol '{protocol}://'; use a local directory or "
                         f"an fsspec URL such as file:///shared/store, s3://bucket/prefix or memory://name") from None


def _token(info: dict) -> str:
    """Changes whenever the remote file is rewritten: its listing entry (size, mtime / ETag, inode...)."""
    return hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()).hexdigest()


class RemoteStore(ArtifactStore):
    """ArtifactStore whose outputs live at an fsspec URL; `root` is this host's local cache."""

    remote = True

    def __init__(self, url: str, cache: str | os.PathLike | None = None):
        self.url = url.rstrip("/")
        self.fs, self.base = filesystem(self.url)
        self.base = self.base.rstrip("/")
        super().__init__(cache_root(self.url, cache))

    # ---- layout -------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self.url

    def where(self, stage: str, key: str) -> str:
        return f"{self.url}/{stage}/{key}"

    def _rpath(self, stage: str, key: str, rel: str = "") -> str:
        return f"{self.base}/{stage}/{key}" + (f"/{rel}" if rel else "")

    def manifest(self, stage: str, key: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self._rpath(stage, key, MANIFEST)))
        except (FileNotFoundError, ValueError):
            return None

    def _listing(self, prefix: str) -> dict[str, dict]:
        """relative path -> fsspec info of every file below `prefix`."""
        try:
            found = self.fs.find(prefix, detail=True)
        except FileNotFoundError:
            return {}
        strip = self.fs._strip_protocol(prefix).rstrip("/") + "/"
        return {p[len(strip):]: i for p, i in found.items() if p.startswith(strip)}

    def check_writable(self) -> None:
        try:
            super().check_writable()  # the local cache, where stages build
        except StoreError:
            raise StoreError(f"the local cache {self.root} of store {self.url} is not writable; pass --cache "
                             f"(or set {ENV_CACHE}) with a writable directory") from None
        probe = f"{self.base}/.write-probe-{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(self.base, exist_ok=True)
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except Exception as e:  # backends raise their own types (PermissionError, ClientError, ...)
            raise StoreError(f"store {self.url} is not writable ({type(e).__name__}: {e}); check the "
                             f"credentials and permissions, or pass another --store") from None

    # ---- integrity ----------------------------------------------------------------------------
    def status(self, stage: str, key: str) -> str:
        """cached | missing | broken, from the remote manifest and listing only (downloads nothing)."""
        m = self.manifest(stage, key)
        if m is None:
            return "missing"
        return "broken" if self._listing_problems(stage, key, m, self._listing(self._rpath(stage, key))) \
            else "cached"

    def _listing_problems(self, stage: str, key: str, m: dict, listing: dict) -> list[str]:
        out = []
        for rel, meta in m.get("files", {}).items():
            info = listing.get(rel)
            if info is None:
                out.append(f"{stage}/{key}/{rel}: missing in {self.url}")
            elif info.get("size") is not None and int(info["size"]) != meta["size"]:
                out.append(f"{stage}/{key}/{rel}: size {info['size']} != {meta['size']} in {self.url}")
        return out

    def problems(self, stage: str, key: str, deep: bool = False) -> list[str]:
        """[] when the output is published and this host's cache holds verified copies of its files.

        Downloads what is missing here or changed there and checks its sha256; `deep` downloads and
        checks every file again.
        """
        m = self.manifest(stage, key)
        if m is None:
            return [f"{stage}/{key}: no manifest in {self.url}"]
        listing = self._listing(self._rpath(stage, key))
        out = self._listing_problems(stage, key, m, listing)
        if out:
            return out
        with self._sync_lock(stage, key):
            return self._sync(stage, key, m, listing, deep)

    def _sync(self, stage: str, key: str, m: dict, listing: dict, deep: bool) -> list[str]:
        local = self.path(stage, key)
        state_path = self.root / SYNC_DIR / stage / f"{key}.json"
        state = _read_state(state_path)
        out = []
        for rel, meta in m["files"].items():
            token, have, p = _token(listing[rel]), state.get(rel, {}), local / rel
            if not deep and have.get("token") == token and have.get("sha256") == meta["sha256"] \
                    and _unchanged(p, have):
                continue
            digest = self._download(self._rpath(stage, key, rel), p, meta["sha256"])
            if digest != meta["sha256"]:
                out.append(f"{stage}/{key}/{rel}: content digest mismatch in {self.url}")
                state.pop(rel, None)
                continue
            state[rel] = {"sha256": digest, "token": token, "mtime_ns": p.stat().st_mtime_ns}
        if not out:  # a local copy of the manifest, for people browsing the cache
            atomic_write_json(local / MANIFEST, m)
        atomic_write_json(state_path, state)
        return out

    def _download(self, rpath: str, dest: Path, expected: str) -> str:
        """Copy a remote file next to `dest` while hashing it; keep it only if the digest matches."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        h = hashlib.sha256()
        try:
            with self.fs.open(rpath, "rb") as src, open(tmp, "wb") as dst:
                while block := src.read(CHUNK):
                    h.update(block)
                    dst.write(block)
            if h.hexdigest() == expected:
                os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return h.hexdigest()

    def _sync_lock(self, stage: str, key: str):
        """Threads and processes of this host download one output once (not the build lock: run_stage
        holds that one while it checks the output)."""
        return file_lock(self.root / ".locks" / f"sync-{stage}-{key}.lock")

    # ---- building and publishing -------------------------------------------------------------
    def load(self, stage: str, key: str) -> dict:
        m = self.manifest(stage, key)
        if m is None:
            raise StoreError(f"no output {stage}/{key} in {self.url}; run the flow first")
        problems = self.problems(stage, key)
        if problems:
            raise StoreError(f"output {stage}/{key} in {self.url} is incomplete or corrupt ({problems[0]}); "
                             f"re-run the flow to rebuild it")
        m["path"] = str(self.path(stage, key))
        return m

    def localize(self, manifest: dict) -> dict:
        """The manifest of an input with `path` on this host (downloaded and verified if needed)."""
        return self.load(manifest["stage"], manifest["key"])

    def new_staging(self, stage: str, key: str) -> str:
        """A fresh remote staging prefix (for parts of one output built on several hosts)."""
        return f"{self.base}/{stage}/.staging-{key}-{uuid.uuid4().hex[:12]}"

    def upload(self, local_root: Path, rels: list[str], prefix: str) -> dict[str, dict]:
        """Upload local_root/rel to prefix/rel for each rel; returns {rel: {size, sha256}}."""
        out = {}
        for rel in rels:
            p = local_root / rel
            self._put(p, f"{prefix}/{rel}")
            out[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
        return out

    def download(self, prefix: str, files: dict[str, dict], local_root: Path) -> None:
        """Download prefix/rel to local_root/rel for each {rel: {sha256}}, checking every digest."""
        for rel, meta in files.items():
            if self._download(f"{prefix}/{rel}", local_root / rel, meta["sha256"]) != meta["sha256"]:
                raise StoreError(f"{prefix}/{rel} does not match the digest it was uploaded with; "
                                 f"re-run the flow (its staging files are rebuilt)")

    def _put(self, src: Path, dest: str) -> None:
        self.fs.makedirs(self.fs._parent(dest), exist_ok=True)
        if _renames_atomically(self.fs):
            tmp = f"{dest}.{uuid.uuid4().hex[:8]}.tmp"
            self.fs.put_file(str(src), tmp)
            self.fs.mv(tmp, dest)
        else:  # object stores make an object visible only once its upload completed
            self.fs.put_file(str(src), dest)

    def publish(self, stage: str, key: str, staging: Path, record: dict,
                remote_files: dict[str, dict] | None = None, remote_staging: str | None = None) -> dict:
        """Upload the staging dir's files (and move `remote_files` already uploaded to `remote_staging`
        by other hosts), then write the manifest last; the staging dir becomes this host's cached copy."""
        remote_files = remote_files or {}
        local_files = file_entries(staging)
        files = dict(sorted({**local_files, **remote_files}.items()))
        manifest = {**record, "stage": stage, "key": key, "files": files, "published_at": time.time()}
        final = self._rpath(stage, key)
        with contextlib.suppress(FileNotFoundError):  # uncommit a broken old output before touching it
            self.fs.rm_file(f"{final}/{MANIFEST}")
        for rel in set(self._listing(final)) - set(files):  # leftovers of the broken old output
            if not rel.endswith(".tmp"):  # (not another host's upload of the same key in flight)
                self.fs.rm_file(f"{final}/{rel}")
        for rel in remote_files:
            self.fs.makedirs(self.fs._parent(f"{final}/{rel}"), exist_ok=True)
            self.fs.mv(f"{remote_staging}/{rel}", f"{final}/{rel}")
        for rel in local_files:
            self._put(staging / rel, f"{final}/{rel}")
        if remote_staging:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(remote_staging, recursive=True)
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2, default=_json_default) + "\n")
        self._put(staging / MANIFEST, f"{final}/{MANIFEST}")  # the commit
        self._adopt(stage, key, staging, manifest, local_files)
        manifest["path"] = str(self.path(stage, key))
        return manifest

    def _adopt(self, stage: str, key: str, staging: Path, manifest: dict, local_files: dict) -> None:
        """The just-published staging dir becomes the cached copy, recorded as verified."""
        local = replace_dir(staging, self.path(stage, key))
        listing = self._listing(self._rpath(stage, key))
        state = {rel: {"sha256": meta["sha256"], "token": _token(listing[rel]),
                       "mtime_ns": (local / rel).stat().st_mtime_ns}
                 for rel, meta in local_files.items() if rel in listing}
        atomic_write_json(self.root / SYNC_DIR / stage / f"{key}.json", state)

    # ---- listing, cleanup -------------------------------------------------------------------------
    def _dirs(self, path: str) -> list[str]:
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory")

    def outputs(self) -> Iterator[tuple[str, str]]:
        for stage in self._dirs(self.base):
            if not stage.startswith("."):
                for key in self._dirs(f"{self.base}/{stage}"):
                    if not key.startswith("."):
                        yield stage, key

    def leftovers(self) -> list:
        """Remote staging prefixes of killed runs (as URLs), then this host's local leftovers."""
        remote = [f"{self.url}/{stage}/{name}" for stage in self._dirs(self.base) if not stage.startswith(".")
                  for name in self._dirs(f"{self.base}/{stage}") if name.startswith(".staging-")]
        return remote + super().leftovers()

    def remove_leftover(self, item) -> None:
        if is_url(str(item)):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.base + str(item)[len(self.url):], recursive=True)
        else:
            super().remove_leftover(item)

    def remove(self, stage: str, key: str) -> None:
        final = self._rpath(stage, key)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(f"{final}/{MANIFEST}")  # unpublish first: no reader trusts a half-deleted output
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(final, recursive=True)
        (self.root / SYNC_DIR / stage / f"{key}.json").unlink(missing_ok=True)
        super().remove(stage, key)


def _renames_atomically(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _read_state(path: Path) -> dict:
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return {}


def _unchanged(p: Path, have: dict) -> bool:
    """The cached copy is still the one this host verified (same mtime; a rewrite changes it)."""
    try:
        return p.stat().st_mtime_ns == have.get("mtime_ns")
    except FileNotFoundError:
        return False
