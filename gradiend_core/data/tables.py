"""Labelled tables (`data.table`): the user's own masked sentences, one row per masked sentence.

A table is read whole (`sources.read_frame`: parquet, CSV, JSONL or a `save_to_disk` folder) and checked
row by row before any stage runs: its columns, exactly one [MASK] per masked text, a factual word and class
in every row, split names, alternative classes. `INPUT_SCHEMA` lists the columns and the names read for
each (`schema.TABLE_INPUT_COLUMNS`: our own first, then the reference's unified/merged names);
`data.table_columns` maps them explicitly.
Rows become training rows in `labelled.py`.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from gradiend_core.data.schema import MASK, SPLITS, TABLE_INPUT_COLUMNS
from gradiend_core.errors import ConfigError, DataError

# role -> (column names read, first found wins; required; meaning): see schema.TABLE_INPUT_COLUMNS
INPUT_SCHEMA: dict[str, tuple[tuple[str, ...], bool, str]] = {
    role: (names, required, meaning) for role, names, required, meaning in TABLE_INPUT_COLUMNS}
ROLES = tuple(INPUT_SCHEMA)
SPLIT_ALIASES = {"val": "validation", "valid": "validation"}


class TableRow(NamedTuple):
    masked: str
    factual: str
    factual_class: str
    alternative: str | None
    alternative_class: str | None
    split: str | None


@dataclass(frozen=True)
class LabelledTable:
    source: str                   # the path, for messages
    columns: dict[str, str]       # role -> the column it was read from
    rows: tuple[TableRow, ...]

    @property
    def has_split(self) -> bool:
        return "split" in self.columns

    def classes(self) -> dict[str, list[str]]:
        """class -> its words (factual words, then alternatives given for it; lowercased, in order of
        first appearance); classes in order of first appearance (factual classes first)."""
        out: dict[str, list[str]] = {}
        for r in self.rows:
            out.setdefault(r.factual_class, []).append(normal_word(r.factual))
        for r in self.rows:
            if r.alternative_class is not None:
                words = out.setdefault(r.alternative_class, [])
                if r.alternative is not None:
                    words.append(normal_word(r.alternative))
        return {c: list(dict.fromkeys(ws)) for c, ws in out.items()}


def normal_word(word: str) -> str:
    return " ".join(word.lower().split())


def check_column_map(columns: Mapping[str, Any] | None) -> None:
    """data.table_columns: known roles mapped to column names (ConfigError otherwise)."""
    from gradiend_core.config_loader import suggest

    for role, col in (columns or {}).items():
        if role not in INPUT_SCHEMA:
            raise ConfigError(f"data.table_columns: unknown column role '{role}'{suggest(str(role), ROLES)}; "
                              f"use {', '.join(ROLES)}")
        if not isinstance(col, str) or not col.strip():
            raise ConfigError(f"data.table_columns.{role} must be a column name, got {col!r}")


def resolve_columns(found: list[str], mapping: Mapping[str, str] | None, source: str) -> dict[str, str]:
    """role -> column: the mapped one, else the first of the role's names that the table has."""
    out: dict[str, str] = {}
    for role, (names, required, _) in INPUT_SCHEMA.items():
        if mapping and role in mapping:
            if mapping[role] not in found:
                raise DataError(f"data.table {source} has no column '{mapping[role]}' (data.table_columns."
                                f"{role}); columns found: {', '.join(found)}")
            out[role] = mapping[role]
            continue
        hit = next((n for n in names if n in found), None)
        if hit is not None:
            out[role] = hit
        elif required:
            looked = " or ".join(f"'{n}'" for n in names)
            raise DataError(f"data.table {source} has no {role} column (looked for {looked}; columns found: "
                            f"{', '.join(found)}); rename it or set data.table_columns: {{{role}: <column>}}")
    return out


def load_table(path: str, digest: str, columns: Mapping[str, str] | None = None) -> LabelledTable:
    """The checked rows of a labelled table; cached per path, content digest and column map."""
    return _load(str(path), digest, tuple(sorted((columns or {}).items())))


@functools.lru_cache(maxsize=4)
def _load(path: str, digest: str, mapping: tuple) -> LabelledTable:
    from .sources import read_frame

    df = read_frame(path, "data.table")
    cols = resolve_columns([str(c) for c in df.columns], dict(mapping), path)
    if len(df) == 0:
        raise DataError(f"data.table {path} has no rows; give at least one labelled sentence per class")
    values = {role: df[col].tolist() for role, col in cols.items()}
    rows = tuple(_row(i, values, cols, path) for i in range(len(df)))
    table = LabelledTable(path, cols, rows)
    if "alternative" in cols and "alternative_class" not in cols:
        table = _infer_alternative_class(table)
    return table


def _cell(values: dict, role: str, i: int, cols: dict, source: str, required: bool = True) -> str | None:
    if role not in values:
        return None
    v = values[role][i]
    if v is None or (isinstance(v, float) and v != v):  # NaN != NaN
        v = ""
    v = (v if isinstance(v, str) else str(v)).strip()
    if not v and required:
        raise DataError(f"data.table {source} row {i + 1}: empty '{cols[role]}' ({role}); fill it or drop the row")
    return v


def _row(i: int, values: dict, cols: dict, source: str) -> TableRow:
    masked, factual, cls, alt, alt_cls, split = (_cell(values, r, i, cols, source) for r in ROLES)
    n = masked.count(MASK)
    if n != 1:
        raise DataError(f"data.table {source} row {i + 1}: the masked text holds {n} {MASK} placeholders, "
                        f"needs exactly one (where the factual word was): {masked[:80]!r}")
    if split is not None:
        split = SPLIT_ALIASES.get(split.lower(), split.lower())
        if split not in SPLITS:
            raise DataError(f"data.table {source} row {i + 1}: split '{values['split'][i]}' is not one of "
                            f"{', '.join(SPLITS)} (val, valid also mean validation); fix the split column")
    if alt_cls is not None and alt_cls == cls:
        raise DataError(f"data.table {source} row {i + 1}: alternative class '{alt_cls}' is the factual class; "
                        f"the alternative must come from another class")
    return TableRow(masked, factual, cls, alt, alt_cls, split)


def _infer_alternative_class(table: LabelledTable) -> LabelledTable:
    """An alternative column without alternative_class: with exactly two classes, the other one."""
    names = list(dict.fromkeys(r.factual_class for r in table.rows))
    if len(names) != 2:
        raise DataError(f"data.table {table.source} has an alternative column but no alternative_class, and "
                        f"{len(names)} classes ({', '.join(names)}); add an alternative_class column (or map "
                        f"one: data.table_columns)")
    rows = tuple(r._replace(alternative_class=names[1 - names.index(r.factual_class)]) for r in table.rows)
    return LabelledTable(table.source, {**table.columns, "alternative_class": "(inferred)"}, rows)


def table_class_map(table: LabelledTable, configured: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The classes of a table run: `configured` (data.classes) gives names and order, each class's words
    being its configured words plus the table's; without it, the table's classes in order of appearance.
    A table class that data.classes does not list is an error."""
    found = table.classes()
    owner: dict[str, str] = {}
    for cls, words in found.items():
        for w in words:
            if owner.setdefault(w, cls) != cls:
                raise DataError(f"word '{w}' is in classes '{owner[w]}' and '{cls}' of data.table {table.source} "
                                f"(as a factual or alternative word); a word may belong to one class only")
    if configured is None:
        return found
    names = [str(c).strip() for c in configured]
    unknown = [c for c in found if c not in names]
    if unknown:
        col = table.columns["factual_class"]
        raise DataError(f"data.table {table.source} has class '{unknown[0]}' (column '{col}') that data.classes "
                        f"does not list ({', '.join(names)}); add it to data.classes or drop its rows")
    out = {}
    for name, words in configured.items():
        mine = [normal_word(w) for w in (words or []) if isinstance(w, str)]
        out[name] = list(dict.fromkeys(mine + found.get(str(name).strip(), [])))
    return out

