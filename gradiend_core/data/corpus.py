"""Where a data section's texts and classes come from: a built-in data set or the user's files.

Stage keys hold a corpus's content digest, never its path (a changed file must change keys, a moved
one must not).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ConfigError
from ..io import known_sha256


def file_digest(path: str | None) -> str | None:
    """Content digest of a file or directory (never the path name: a changed file must change keys)."""
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        return known_sha256(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f.relative_to(p).as_posix().encode())
            h.update(known_sha256(f).encode())
        return h.hexdigest()
    raise ConfigError(f"file '{path}' not found; fix the path in the experiment (data.corpus / neutral_corpus)")


def builtin_dataset(name: str) -> dict:
    from .builtin import BUILTIN_DATASETS

    if name not in BUILTIN_DATASETS:
        from ..config_loader import suggest

        raise ConfigError(f"data.builtin: unknown data set '{name}'{suggest(name, BUILTIN_DATASETS)}; "
                          f"choose one of {', '.join(BUILTIN_DATASETS)}")
    return BUILTIN_DATASETS[name]


def corpus_identity(data) -> dict:
    """What determines the base texts: the builtin's name or the corpus files' content digests."""
    return {"builtin": data.builtin, "corpus": file_digest(data.corpus), "text_column": data.text_column,
            "neutral_corpus": file_digest(data.neutral_corpus)}


def corpus_texts(data) -> list[str]:
    from .sources import load_texts

    if data.corpus is not None:
        return load_texts(data.corpus, text_column=data.text_column)
    return list(builtin_dataset(data.builtin)["texts"]())


def neutral_texts(data) -> list[str]:
    from .sources import load_texts

    if data.neutral_corpus is not None:
        return load_texts(data.neutral_corpus, text_column=data.text_column)
    if data.builtin is not None and data.corpus is None:
        return list(builtin_dataset(data.builtin)["neutral_texts"]())
    return corpus_texts(data)


def class_map(data) -> dict[str, list[str]]:
    if data.classes is not None:
        return {k: list(v) for k, v in data.classes.items()}
    if data.builtin is None:
        raise ConfigError("data.classes is required with a custom corpus, e.g. {3SG: [he, she], 3PL: [they]}")
    return {k: list(v) for k, v in builtin_dataset(data.builtin)["classes"].items()}
