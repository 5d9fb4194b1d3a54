"""Small I/O helpers: atomic writes (temp file + rename) and stable digests."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")


def human_bytes(n: float) -> str:
    """A size for people: '512.0 KiB', '3.4 GiB'."""
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# path -> (identity of the file when it was hashed, sha256); see remember_digest
_known_digests: dict[str, tuple[tuple[int, ...], str]] = {}


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is replaced or rewritten: device, inode, size, mtime and ctime."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def remember_digest(path: str | os.PathLike) -> str:
    """sha256 of a file its writer has finished, hashed now and remembered with the file's identity.

    A writer thread calls this right after writing (the bytes are still in the page cache, and the
    hashing overlaps the computation of the next block), so `known_sha256` at publish time returns
    the digest without reading the file again. A file that changes afterwards gets another identity
    and is hashed again; one that changed while being hashed here is not remembered.
    """
    p = os.fspath(path)
    before = _identity(os.stat(p))
    digest = sha256_file(p)
    if _identity(os.stat(p)) == before:
        _known_digests[p] = (before, digest)
    return digest


def known_sha256(path: str | os.PathLike, forget: bool = False) -> str:
    """sha256 of a file: the remembered digest when the file is unchanged since, else read, hashed and
    remembered now. `forget`: neither keep nor add an entry (the file is about to be renamed, e.g. a
    staging dir being published)."""
    p = os.fspath(path)
    hit = _known_digests.pop(p, None) if forget else _known_digests.get(p)
    if hit is not None and hit[0] == _identity(os.stat(p)):
        return hit[1]
    return sha256_file(p) if forget else remember_digest(p)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a temp file in the same directory, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, sort_keys=True, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
