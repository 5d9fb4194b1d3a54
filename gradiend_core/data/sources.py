"""Load base texts from a list, a local file, or a locally available Hugging Face dataset.

Every source ends up as a flat `list[str]`: values stripped, empty values dropped, then shuffled with
`random.Random(seed)` and truncated to `max_texts` (the reference's order of operations).
Files are decoded as strict UTF-8 (a leading BOM is ignored) so a bad byte is reported with its offset
instead of being silently replaced.

A directory is a Hugging Face `save_to_disk` dataset when it holds one's metadata files, else a folder of
documents: every `.txt` file below it (sorted by path) is one text.
`read_frame` reads a whole table (labelled data: `tables.py`).

Deviation from the reference: Hugging Face datasets are only read when they are already on this machine
(a `save_to_disk` directory or the local cache, with HF offline mode forced); nothing is ever downloaded,
and there is no streaming "first N texts" mode: `max_texts` is always a seeded random sample.
"""
from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradiend_core.errors import DataError

FILE_SUFFIXES = (".txt", ".csv", ".parquet", ".jsonl")
TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")  # written by `save_to_disk`
_BOM = b"\xef\xbb\xbf"


def load_texts(source: Any, text_column: str = "text", max_texts: int | None = None,
               seed: int = 42) -> list[str]:
    """Return the non-empty, stripped texts of `source`, shuffled with `seed`, at most `max_texts`.

    `source`: list/tuple of str, a pandas DataFrame, a path to a .txt (one text per line), .csv,
    .parquet or .jsonl file, a folder of .txt files (one text each), a `datasets.save_to_disk`
    directory, or a Hugging Face dataset id that is available offline.
    """
    if max_texts is not None and (not isinstance(max_texts, int) or max_texts < 1):
        raise DataError(f"max_texts must be a positive integer or None, got {max_texts!r}")
    texts, name = _read_source(source, text_column)
    texts = _clean(texts)
    if not texts:
        raise DataError(f"no non-empty text in {name}; give a corpus with at least one non-blank text")
    random.Random(seed).shuffle(texts)
    return texts[:max_texts] if max_texts is not None else texts


def _read_source(source: Any, text_column: str) -> tuple[list[Any], str]:
    if isinstance(source, (list, tuple)):
        return list(source), "the given list of texts"
    if _is_dataframe(source):
        return _column(source, text_column, "the given DataFrame"), "the given DataFrame"
    if isinstance(source, (str, os.PathLike)):
        return _read_path_or_hub(source, text_column)
    raise DataError(f"unsupported text source of type {type(source).__name__}; pass a list of str, "
                    f"a DataFrame, or a path to a {'/'.join(FILE_SUFFIXES)} file")


def _read_path_or_hub(source: str | os.PathLike, text_column: str) -> tuple[list[Any], str]:
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if path.is_dir() and is_hf_dir(path):
        return _read_hf(str(path), text_column, from_disk=True), str(path)
    if path.is_dir():
        return read_documents(path), str(path)
    if suffix in FILE_SUFFIXES or path.exists():
        if not path.is_file():
            raise DataError(f"text file not found: {path}; check the path (relative paths are "
                            f"resolved from {Path.cwd()})")
        return _read_file(path, suffix, text_column), str(path)
    return _read_hf(str(source), text_column, from_disk=False), f"dataset '{source}'"


def _read_file(path: Path, suffix: str, text_column: str) -> list[Any]:
    if suffix == ".parquet":
        return _read_parquet(path, text_column)
    text = _decode_utf8(path)
    if suffix == ".csv":
        import pandas as pd

        try:
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DataError(f"cannot parse CSV file {path}: {str(e).splitlines()[0]}; "
                            f"fix the file or convert it to .txt/.jsonl") from None
        return _column(df, text_column, str(path))
    if suffix == ".jsonl":
        return _read_jsonl(path, text, text_column)
    return text.split("\n")  # .txt or any other existing file: one text per line


def is_hf_dir(path: Path) -> bool:
    return any((path / m).is_file() for m in HF_MARKERS)


def read_documents(folder: Path) -> list[str]:
    """Every .txt file below `folder` (sorted by relative path) as one text."""
    files = sorted((f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() == ".txt"),
                   key=lambda f: f.relative_to(folder).as_posix())
    if not files:
        found = sorted(f.name for f in folder.iterdir())[:5]
        what = f"(found: {', '.join(found)})" if found else "(it is empty)"
        raise DataError(f"folder {folder} holds no .txt file {what}; put one document per .txt file in it, "
                        f"or pass a file")
    return [_decode_utf8(f) for f in files]


def read_frame(path: str | os.PathLike, what: str = "table") -> Any:
    """A whole table as a DataFrame (strings as read, CSV cells never NA): .parquet, .csv, .jsonl, or a
    `save_to_disk` directory (a DatasetDict's parts are concatenated; a `split` column is added from
    their names when they are split names and the data has none)."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not is_hf_dir(p):
            raise DataError(f"{what} {p} is a folder but not a Hugging Face `save_to_disk` dataset (no "
                            f"{'/'.join(HF_MARKERS)}); pass a {'/'.join(TABLE_SUFFIXES)} file")
        return _hf_frame(str(p), what)
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{what} {p}: unknown table format '{suffix or p.name}'; use a "
                        f"{'/'.join(TABLE_SUFFIXES)} file or a `save_to_disk` folder")
    if not p.is_file():
        raise DataError(f"{what} {p} not found; check the path (relative paths are resolved from the "
                        f"experiment file)")
    return _file_frame(p, suffix)


def _file_frame(p: Path, suffix: str) -> Any:
    import pandas as pd

    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(p).to_pandas()
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"cannot read parquet file {p}: {e}; check that it is a parquet file") from None
    text = _decode_utf8(p)
    if suffix == ".csv":
        try:
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise DataError(f"cannot parse CSV file {p}: {str(e).splitlines()[0]}; fix the file or "
                            f"convert it to .parquet/.jsonl") from None
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p} line {lineno} is not valid JSON ({e.msg}); write one JSON object "
                                f"per line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p} line {lineno} is a {type(obj).__name__}, not a JSON object; write "
                                f"one object (column: value) per line")
            records.append(obj)
    return pd.DataFrame.from_records(records)


def _hf_frame(source: str, what: str) -> Any:
    os.environ["HF_DATASETS_OFFLINE"] = "1"  # before `datasets` is imported (read at import time)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import datasets
    except ImportError:
        raise DataError(f"{what} {source} is a Hugging Face `save_to_disk` folder and the `datasets` package "
                        f"is not installed; pip install datasets, or export the table to parquet/CSV/JSONL") from None
    import pandas as pd

    try:
        ds = datasets.load_from_disk(source)
    except Exception as e:  # datasets raises many types
        raise DataError(f"cannot read the `save_to_disk` folder {source} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); save it again or export it to parquet") from None
    if not isinstance(ds, datasets.DatasetDict):
        return ds.to_pandas()
    parts = {name: part.to_pandas() for name, part in ds.items()}
    split_names = {"train", "validation", "test", "val", "valid"}
    if set(parts) <= split_names and not any("split" in f.columns for f in parts.values()):
        parts = {n: f.assign(split=n) for n, f in parts.items()}
    return pd.concat(list(parts.values()), ignore_index=True)


def _decode_utf8(path: Path) -> str:
    data = path.read_bytes()
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"file {path} is not valid UTF-8 (byte {e.start + skip}: "
                        f"{data[e.start + skip:e.start + skip + 1]!r}); re-encode it as UTF-8, "
                        f"e.g. `iconv -f latin1 -t utf-8`") from None


def _read_jsonl(path: Path, text: str, text_column: str) -> list[Any]:
    values: list[Any] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {lineno} is not valid JSON ({e.msg}); "
                            f"write one JSON object per line") from None
        if not isinstance(obj, dict) or text_column not in obj:
            keys = ", ".join(obj) if isinstance(obj, dict) else type(obj).__name__
            raise DataError(f"{path} line {lineno} has no column '{text_column}' (columns: {keys}); "
                            f"pass text_column=<one of them>")
        values.append(obj[text_column])
    return values


def _read_parquet(path: Path, text_column: str) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"cannot read parquet file {path}: {e}; check that it is a parquet file") from None
    if text_column not in names:
        raise DataError(f"{path} has no column '{text_column}' (columns: {', '.join(names)}); "
                        f"pass text_column=<one of them>")
    return pq.read_table(path, columns=[text_column]).column(0).to_pylist()


def _read_hf(source: str, text_column: str, from_disk: bool) -> list[Any]:
    # Offline mode must be set before `datasets` is imported: it reads these at import time.
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import datasets
    except ImportError:
        raise DataError(f"'{source}' is not an existing .txt/.csv/.parquet/.jsonl file and the "
                        f"`datasets` package is not installed; install `datasets` (pip install datasets) "
                        f"to read a local Hugging Face dataset, or pass a file") from None
    try:
        if from_disk:
            ds = datasets.load_from_disk(source)
        else:
            ds = datasets.load_dataset(source, split="train")
    except Exception as e:  # datasets raises many types (FileNotFoundError, ConnectionError, ...)
        raise DataError(f"dataset '{source}' is not available locally ({type(e).__name__}); "
                        f"nothing is downloaded: save it with `save_to_disk` and pass that directory") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError(f"dataset '{source}' has no 'train' split (splits: {', '.join(ds)}); "
                            f"save the split you want with `save_to_disk`")
        ds = ds["train"]
    if text_column not in ds.column_names:
        raise DataError(f"dataset '{source}' has no column '{text_column}' (columns: "
                        f"{', '.join(ds.column_names)}); pass text_column=<one of them>")
    return list(ds[text_column])


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


def _column(df: Any, text_column: str, name: str) -> list[Any]:
    if text_column not in df.columns:
        cols = ", ".join(str(c) for c in df.columns)
        raise DataError(f"{name} has no column '{text_column}' (columns: {cols}); "
                        f"pass text_column=<one of them>")
    return df[text_column].tolist()


def _clean(values: Iterable[Any]) -> list[str]:
    """Strip every value; drop None/NaN/empty ones. Non-str scalars are kept as their str()."""
    out: list[str] = []
    for v in values:
        if v is None or (isinstance(v, float) and v != v):  # NaN != NaN
            continue
        s = (v if isinstance(v, str) else str(v)).strip()
        if s:
            out.append(s)
    return out
