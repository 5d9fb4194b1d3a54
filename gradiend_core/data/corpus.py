"""Where a data section's texts and classes come from: a built-in data set, the user's corpus (texts to
search for target words) or the user's labelled table (masked sentences, `tables.py`).

Stage keys hold a corpus's content digest, never its path (a changed file must change keys, a moved
one must not).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ConfigError
from .merge import check_merge, merged_class_map
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
    raise ConfigError(f"file '{path}' not found; fix the path in the experiment (data.corpus / table / "
                      f"neutral_corpus)")


def builtin_dataset(name: str) -> dict:
    from .builtin import BUILTIN_DATASETS

    if name not in BUILTIN_DATASETS:
        from ..config_loader import suggest

        raise ConfigError(f"data.builtin: unknown data set '{name}'{suggest(name, BUILTIN_DATASETS)}; "
                          f"choose one of {', '.join(BUILTIN_DATASETS)}")
    return BUILTIN_DATASETS[name]


def corpus_identity(data) -> dict:
    """What determines the base texts: the builtin's name or the corpus files' content digests (a table's
    only when one is set, so that the keys of corpus and builtin runs stay what they were)."""
    out = {"builtin": data.builtin, "corpus": file_digest(data.corpus), "text_column": data.text_column,
           "neutral_corpus": file_digest(data.neutral_corpus)}
    if getattr(data, "table", None) is not None:
        out.update(table=file_digest(data.table), table_columns=data.table_columns)
    return out


def labelled_table(data):
    """The checked rows of data.table (`tables.LabelledTable`)."""
    from .tables import load_table

    return load_table(data.table, file_digest(data.table), data.table_columns)


def training_data(data):
    """The training rows of a data section: from its labelled table, or its corpus / builtin texts."""
    if getattr(data, "table", None) is not None:
        from .labelled import create_table_data

        return create_table_data(labelled_table(data), data.resolved())
    from .creation import create_training_data

    return create_training_data(corpus_texts(data), data.resolved())


def corpus_texts(data) -> list[str]:
    """The base texts (a table's: its masked sentences with the factual word filled in)."""
    from .sources import load_texts

    if getattr(data, "table", None) is not None:
        from .schema import MASK

        return [r.masked.replace(MASK, r.factual) for r in labelled_table(data).rows]
    if data.corpus is not None:
        return load_texts(data.corpus, text_column=data.text_column)
    return list(builtin_dataset(data.builtin)["texts"]())


def neutral_texts(data) -> list[str]:
    from .sources import load_texts

    if data.neutral_corpus is not None:
        return load_texts(data.neutral_corpus, text_column=data.text_column)
    if getattr(data, "table", None) is not None:
        raise ConfigError(TABLE_NEEDS_NEUTRAL)
    if data.builtin is not None and data.corpus is None:
        return list(builtin_dataset(data.builtin)["neutral_texts"]())
    return corpus_texts(data)


TABLE_NEEDS_NEUTRAL = ("data.table holds masked sentences, no neutral ones: set data.neutral_corpus (a .txt file "
                       "with one text per line, a table with a text column, or a folder of .txt files)")


def class_map(data) -> dict[str, list[str]]:
    """Ordered class -> target words: data.classes, else the builtin's; with a table, also its words."""
    if getattr(data, "table", None) is not None:
        from .tables import table_class_map

        return table_class_map(labelled_table(data), data.classes)
    if data.classes is not None:
        return {k: list(v) for k, v in data.classes.items()}
    if data.builtin is None:
        raise ConfigError("data.classes is required with a custom corpus, e.g. {3SG: [he, she], 3PL: [they]}")
    return {k: list(v) for k, v in builtin_dataset(data.builtin)["classes"].items()}


def merged_classes(data) -> dict[str, list[str]]:
    """The GRADIEND-side classes: class_map(data) after data.merge (merged name -> union of words)."""
    classes = class_map(data)
    check_merge(getattr(data, "merge", None), classes)
    return merged_class_map(classes, getattr(data, "merge", None))
