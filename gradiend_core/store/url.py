"""A store at an fsspec URL (file://, s3://, gs://, memory://, ...) shared by several hosts.

The URL is the source of truth: `<url>/<stage>/<key>/` holds an output's files and its `manifest.json`.
Each host keeps a local cache of the outputs it builds or reads (a LocalStore at `$GRADIEND_FLOW_CACHE/
stores/<hash of url>`, default `~/.cache/gradiend-flow`), because stages read local files (safetensors,
parquet and zarr want paths) and build into a local staging directory.

- Publishing uploads every file first and writes the manifest LAST: the manifest is the commit marker,
  so a reader never trusts a half-uploaded output. Files are written under a temporary name and
  renamed where the file system can rename atomically; object stores commit a PUT whole anyway.
- Reading compares the remote manifest and listing with what this host verified before (recorded in
  `<cache>/.sync/<stage>/<key>.json`); a file that is missing here or changed there (size, mtime or
  ETag in its listing) is downloaded and its sha256 checked against the manifest, so a corrupted
  remote file is found and its output rebuilt.
- A shared build (several tasks, several hosts) stages its files under a remote prefix
  `<url>/<stage>/.staging-<key>-<random>/`, with one record of digests per step in its `.records/`;
  publishing moves them into place.
- Builds are deterministic, so two hosts that build the same key at the same time upload identical
  bytes; the per-key lock stays per host. A mix of two builds that do differ (e.g. other CPUs round
  differently) cannot pass unnoticed: every download is checked against the manifest that won.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import StoreError
from ..io import atomic_write_json, read_json, sha256_file
from .contract import MANIFEST, SharedStaging, Store, check_part
from .files import file_entries, file_lock, fingerprint_of, local_files, matches, replace_dir, write_manifest
from .local import STAGING, LocalStore
from .marker import FOREIGN, MARKER, MISSING, NEW, NOT_A_DIR, STORE, claim_refusal, is_key, marker_bytes, names_itself

ENV_CACHE = "GRADIEND_FLOW_CACHE"
DEFAULT_CACHE = "~/.cache/gradiend-flow"
SYNC_DIR = ".sync"     # in the cache root: per output, what this host downloaded and verified
RECORDS = ".records"   # in a remote staging prefix: <step>.json, {rel: {size, sha256}} of what it uploaded
SHARED = "shared"      # the record of the shared files (written by the coordinating step)
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


class UrlStore(Store):
    """Outputs at an fsspec URL; `cache` (a LocalStore) is this host's copy, where stages build and read."""

    def __init__(self, url: str, cache: str | os.PathLike | None = None):
        self.url = url.rstrip("/")
        self.fs, base = filesystem(self.url)
        self.base = base.rstrip("/")
        self.cache = LocalStore(cache_root(self.url, cache))

    def __repr__(self) -> str:
        return f"UrlStore({self.url!r}, cache={str(self.cache.root)!r})"

    # ---- layout ---------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.cache.root

    @property
    def location(self) -> str:
        return self.url

    def path(self, stage: str, key: str) -> Path:
        return self.cache.path(stage, key)

    def where(self, stage: str, key: str) -> str:
        return f"{self.url}/{stage}/{key}"

    def _rpath(self, stage: str, key: str, rel: str = "") -> str:
        return f"{self.base}/{stage}/{key}" + (f"/{rel}" if rel else "")

    def check_writable(self) -> None:
        state = self.state()
        if state in (NOT_A_DIR, FOREIGN):
            raise StoreError(claim_refusal(self.url, state))
        try:
            self.cache.probe_writable()  # where stages build
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
        if state != STORE:  # a new store, or one made before markers: mark it (one whole object)
            self._put(marker_bytes(), f"{self.base}/{MARKER}")

    def state(self) -> str:
        try:
            info = self.fs.info(self.base)
        except FileNotFoundError:
            return MISSING
        if info.get("type") != "directory":
            return NOT_A_DIR
        if self.fs.exists(f"{self.base}/{MARKER}"):
            return STORE
        if not self.fs.ls(self.base, detail=False):
            return NEW
        legacy = any(names_itself(self.manifest(stage, key), stage, key)
                     for stage in self._dirs(self.base) if not stage.startswith(".")
                     for key in self._dirs(f"{self.base}/{stage}") if is_key(key))
        return LEGACY if legacy else FOREIGN

    # ---- reading --------------------------------------------------------------------------------
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

    def _listing_problems(self, stage: str, key: str, m: dict, listing: dict) -> list[str]:
        out = []
        for rel, meta in m.get("files", {}).items():
            info = listing.get(rel)
            if info is None:
                out.append(f"{stage}/{key}/{rel}: missing in {self.url}")
            elif info.get("size") is not None and int(info["size"]) != meta["size"]:
                out.append(f"{stage}/{key}/{rel}: size {info['size']} != {meta['size']} in {self.url}")
        return out

    def status(self, stage: str, key: str) -> str:
        m = self.manifest(stage, key)
        if m is None:
            return "missing"
        return "broken" if self._listing_problems(stage, key, m, self._listing(self._rpath(stage, key))) \
            else "cached"

    def fingerprint(self, stage: str, key: str) -> str | None:
        m = self.manifest(stage, key)
        if m is None:
            return None
        listing = self._listing(self._rpath(stage, key))
        if self._listing_problems(stage, key, m, listing):
            return None
        return fingerprint_of(m, {rel: _token(listing[rel]) for rel in m["files"]})

    def verified(self, stage: str, key: str) -> bool:
        m = self.manifest(stage, key)
        if m is None:
            return False
        listing = self._listing(self._rpath(stage, key))
        if self._listing_problems(stage, key, m, listing):
            return False
        state, local = _read_state(self._state_path(stage, key)), self.path(stage, key)
        return all(state.get(rel, {}).get("token") == _token(listing[rel])
                   and state[rel].get("sha256") == meta["sha256"] and _unchanged(local / rel, state[rel])
                   for rel, meta in m["files"].items())

    def problems(self, stage: str, key: str, deep: bool = False) -> list[str]:
        m = self.manifest(stage, key)
        if m is None:
            return [f"{stage}/{key}: no manifest in {self.url}"]
        listing = self._listing(self._rpath(stage, key))
        out = self._listing_problems(stage, key, m, listing)
        if out:
            return out
        with self._sync_lock(stage, key):
            return self._sync(stage, key, m, listing, deep)

    def _sync_lock(self, stage: str, key: str):
        """Threads and processes of this host download one output once (not the build lock: run_stage
        holds that one while it checks the output)."""
        return file_lock(self.root / ".locks" / f"sync-{stage}-{key}.lock")

    def _sync(self, stage: str, key: str, m: dict, listing: dict, deep: bool) -> list[str]:
        """Download what this host lacks or what changed remotely, checking every digest."""
        local = self.path(stage, key)
        state_path = self._state_path(stage, key)
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

    def _state_path(self, stage: str, key: str) -> Path:
        return self.root / SYNC_DIR / stage / f"{key}.json"

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
        return self.load(manifest["stage"], manifest["key"])

    # ---- building one output --------------------------------------------------------------------
    def lock(self, stage: str, key: str):
        return self.cache.lock(stage, key)  # per host (see the module docstring)

    def staging(self, stage: str, key: str, resumable: bool = False) -> Path:
        return self.cache.staging(stage, key, resumable)  # on this host: a resumed build resumes here

    def publish(self, stage: str, key: str, staging: Path, record: dict) -> dict:
        return self._commit(stage, key, staging, record)

    def _commit(self, stage: str, key: str, staging: Path, record: dict, staged: dict[str, dict] | None = None,
                prefix: str | None = None) -> dict:
        """Publish the files of the local `staging` dir plus `staged` ones already uploaded below the
        remote `prefix`: every file first, the manifest last; `staging` becomes this host's copy."""
        staged = staged or {}
        local = file_entries(staging)
        files = dict(sorted({**local, **staged}.items()))
        manifest = {**record, "stage": stage, "key": key, "files": files, "published_at": time.time()}
        final = self._rpath(stage, key)
        with contextlib.suppress(FileNotFoundError):  # uncommit a broken old output before touching it
            self.fs.rm_file(f"{final}/{MANIFEST}")
        for rel in set(self._listing(final)) - set(files):  # leftovers of the broken old output
            if not rel.endswith(".tmp"):  # (not another host's upload of the same key in flight)
                self.fs.rm_file(f"{final}/{rel}")
        for rel in staged:
            self.fs.makedirs(self.fs._parent(f"{final}/{rel}"), exist_ok=True)
            self.fs.mv(f"{prefix}/{rel}", f"{final}/{rel}")
        for rel in local:
            self._put(staging / rel, f"{final}/{rel}")
        if prefix:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(prefix, recursive=True)
        write_manifest(staging, manifest)
        self._put(staging / MANIFEST, f"{final}/{MANIFEST}")  # the commit
        self._adopt(stage, key, staging, local)
        manifest["path"] = str(self.path(stage, key))
        return manifest

    def _adopt(self, stage: str, key: str, staging: Path, local: dict) -> None:
        """The just-published staging dir becomes the cached copy, its files recorded as verified."""
        copy = replace_dir(staging, self.path(stage, key))
        listing = self._listing(self._rpath(stage, key))
        state = {rel: {"sha256": meta["sha256"], "token": _token(listing[rel]),
                       "mtime_ns": (copy / rel).stat().st_mtime_ns}
                 for rel, meta in local.items() if rel in listing}
        atomic_write_json(self._state_path(stage, key), state)

    def _put(self, src: Path | bytes, dest: str) -> None:
        """Upload a local file (or bytes) so that `dest` appears whole or not at all."""
        self.fs.makedirs(self.fs._parent(dest), exist_ok=True)
        if _renames_atomically(self.fs):
            tmp = f"{dest}.{uuid.uuid4().hex[:8]}.tmp"
            self._write(src, tmp)
            self.fs.mv(tmp, dest)
        else:  # object stores make an object visible only once its upload completed
            self._write(src, dest)

    def _write(self, src: Path | bytes, dest: str) -> None:
        if isinstance(src, bytes):
            self.fs.pipe_file(dest, src)
        else:
            self.fs.put_file(str(src), dest)

    # ---- one output built by several tasks ------------------------------------------------------
    @contextlib.contextmanager
    def shared_staging(self, stage: str, key: str) -> Iterator[SharedStaging]:
        area = f"{self.url}/{stage}/{STAGING}{key}-{uuid.uuid4().hex[:12]}"
        scratch = self.cache.scratch(stage, key, SHARED)
        try:
            yield SharedStaging(area, scratch)
            self._upload(scratch, local_files(scratch), self._prefix(stage, key, area), SHARED)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    @contextlib.contextmanager
    def part_workspace(self, stage: str, key: str, staging: str, part: str) -> Iterator[Path]:
        prefix, part = self._prefix(stage, key, staging), check_part(part)
        scratch = self.cache.scratch(stage, key, part)
        try:
            shared = self._record(prefix, SHARED)
            self._fetch(prefix, shared, scratch)
            before = {rel: _stat(scratch / rel) for rel in shared}
            yield scratch
            new = [rel for rel in local_files(scratch) if _stat(scratch / rel) != before.get(rel)]
            self._upload(scratch, new, prefix, f"part-{part}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def publish_shared(self, stage: str, key: str, staging: str, record: dict,
                       drop: Sequence[str] = ()) -> dict:
        prefix = self._prefix(stage, key, staging)
        staged = {rel: meta for rel, meta in self._staged(prefix).items() if not matches(rel, drop)}
        return self._commit(stage, key, self.cache.scratch(stage, key, "publish"), record, staged, prefix)

    def _prefix(self, stage: str, key: str, staging: str) -> str:
        """The file-system path of a staging area's id (its URL), checked to belong to stage/key."""
        head = f"{self.url}/{stage}/{STAGING}{key}-"
        if not staging.startswith(head) or "/" in staging[len(head):]:
            raise StoreError(f"{staging} is no staging area of {stage}/{key} in {self.url}; "
                             f"pass the id that shared_staging returned for this store")
        return self.base + staging[len(self.url):]

    def _upload(self, local_root: Path, rels: list[str], prefix: str, name: str) -> None:
        """Upload local_root/rel to prefix/rel, then the record of their digests (last)."""
        files = {}
        for rel in rels:
            p = local_root / rel
            self._put(p, f"{prefix}/{rel}")
            files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
        self._put(json.dumps(files, indent=2, sort_keys=True).encode(), f"{prefix}/{RECORDS}/{name}.json")

    def _record(self, prefix: str, name: str) -> dict[str, dict]:
        try:
            return json.loads(self.fs.cat_file(f"{prefix}/{RECORDS}/{name}.json"))
        except FileNotFoundError:
            raise StoreError(f"staging area {prefix} has no '{name}' record (its step did not finish, or gc "
                             f"removed the area); re-run the flow") from None

    def _fetch(self, prefix: str, files: dict[str, dict], local_root: Path) -> None:
        """Download prefix/rel to local_root/rel for each {rel: {sha256}}, checking every digest."""
        for rel, meta in files.items():
            if self._download(f"{prefix}/{rel}", local_root / rel, meta["sha256"]) != meta["sha256"]:
                raise StoreError(f"{prefix}/{rel} does not match the digest it was uploaded with; "
                                 f"re-run the flow (its staging files are rebuilt)")

    def _staged(self, prefix: str) -> dict[str, dict]:
        """Every file the steps of a staging area recorded; one file with two digests is an error."""
        files = self._record(prefix, SHARED)  # required: an area gc emptied must not publish as empty
        for rel in sorted(self._listing(f"{prefix}/{RECORDS}")):
            name = rel.removesuffix(".json")
            if name == SHARED:
                continue
            for f, meta in self._record(prefix, name).items():
                if f in files and files[f]["sha256"] != meta["sha256"]:
                    raise StoreError(f"two steps wrote {f} of {prefix} with different bytes; parts must write "
                                     f"disjoint files: fix the stage, then re-run the flow")
                files[f] = meta
        return files

    # ---- listing and cleanup --------------------------------------------------------------------
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
                    if is_key(key):
                        yield stage, key

    def leftovers(self) -> list[str]:
        """Remote staging prefixes of killed runs (as URLs), then this host's local leftovers."""
        remote = [f"{self.url}/{stage}/{name}" for stage in self._dirs(self.base) if not stage.startswith(".")
                  for name in self._dirs(f"{self.base}/{stage}") if name.startswith(STAGING)]
        return remote + self.cache.leftovers()

    def remove_leftover(self, item: str) -> None:
        if item.startswith(self.url + "/"):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.base + item[len(self.url):], recursive=True)
        else:
            self.cache.remove_leftover(item)

    def remove(self, stage: str, key: str) -> None:
        final = self._rpath(stage, key)
        with self.cache.unused(stage, key, self.where(stage, key)):  # (builds on this host only)
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(f"{final}/{MANIFEST}")  # unpublish first: no reader trusts a half-deleted output
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(final, recursive=True)
            self._state_path(stage, key).unlink(missing_ok=True)
            self.cache.drop(stage, key)


def _renames_atomically(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _read_state(path: Path) -> dict:
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return {}


def _stat(p: Path) -> tuple[int, int] | None:
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _unchanged(p: Path, have: dict) -> bool:
    """The cached copy is still the one this host verified (same mtime; a rewrite changes it)."""
    try:
        return p.stat().st_mtime_ns == have.get("mtime_ns")
    except FileNotFoundError:
        return False
