"""The documented parquet schema of a created data set (training.parquet, neutral.parquet), and the
columns a user's labelled table (data.table) is read from.

Column order and dtypes are fixed: writers cast to these schemas, readers check against them.
`SCHEMA_MARKDOWN` is the human description (rendered into docs and `describe_schema()`).
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from gradiend_core.errors import DataError
from gradiend_core.tokens import MASK  # noqa: F401  (re-exported: data.schema.MASK)

SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")

# (name, arrow type, description). The order here IS the column order on disk and in DataFrames.
_TRAINING_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("row_id", pa.int64(), "0..n-1, stable for the same inputs, config and seed"),
    ("text", pa.string(), "the original sentence"),
    ("masked", pa.string(), "the sentence with every matched target of the factual class replaced by [MASK]"),
    ("factual", pa.string(), "surface form of the first masked target, as written in the sentence"),
    ("alternative", pa.string(), "a target word of the alternative class, re-cased like `factual`"),
    ("factual_class", pa.string(), "class of the masked words"),
    ("alternative_class", pa.string(), "class the alternative word is drawn from"),
    ("transition", pa.string(), "'<factual_class>-><alternative_class>'"),
    ("label", pa.int8(), "+1 first configured class, -1 second, 0 any other (factual_class only; a GRADIEND's "
                          "labels come from its train.pair)"),
    ("split", pa.string(), "'train' | 'validation' | 'test'"),
    ("target_word", pa.string(), "lowercased `factual` (the vocabulary unit of held-out splits)"),
    ("n_masks", pa.int16(), "number of [MASK] spans in `masked` (>= 1)"),
]
_NEUTRAL_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("row_id", pa.int64(), "0..n-1, stable for the same inputs and seed"),
    ("text", pa.string(), "a sentence containing none of the excluded words (whole-word match)"),
]

# A labelled input table (data.table, read by tables.py): (role, column names read for it, first found wins
# (ours, then the reference's unified/merged names), required, meaning). data.table_columns maps a role
# to any other column.
TABLE_INPUT_COLUMNS: list[tuple[str, tuple[str, ...], bool, str]] = [
    ("masked", ("masked",), True, f"the sentence with exactly one {MASK} where the factual word was"),
    ("factual", ("factual", "label"), True, f"the word at the {MASK}, as written in the sentence"),
    ("factual_class", ("factual_class", "label_class"), True, "its class (one of data.classes, if given)"),
    ("alternative", ("alternative",), False, "a word of the alternative class, re-cased like `factual`; "
                                             "missing: drawn (seeded) from that class's factual words"),
    ("alternative_class", ("alternative_class",), False, "the alternative's class; missing: one row per "
                                                         "other class (with only `alternative`: the other of two)"),
    ("split", ("split",), False, "train, validation or test (val, valid = validation); missing: data's ratios "
                                 "split each class"),
]

TRAINING_SCHEMA = pa.schema([pa.field(n, t, nullable=False) for n, t, _ in _TRAINING_COLUMNS])
NEUTRAL_SCHEMA = pa.schema([pa.field(n, t, nullable=False) for n, t, _ in _NEUTRAL_COLUMNS])
TRAINING_COLUMNS: list[str] = TRAINING_SCHEMA.names
NEUTRAL_COLUMNS: list[str] = NEUTRAL_SCHEMA.names
# pandas dtype per integer column (string columns use pandas' default string dtype).
INT_DTYPES = {"row_id": "int64", "label": "int8", "n_masks": "int16"}


def _table(rows: list[tuple[str, pa.DataType, str]]) -> str:
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {t} | {d} |" for n, t, d in rows]
    return "\n".join(lines)


def _input_table() -> str:
    lines = ["| role | read from (first found) | required | meaning |", "|---|---|---|---|"]
    lines += [f"| {role} | {', '.join(f'`{n}`' for n in names)} | {'yes' if req else 'no'} | {meaning} |"
              for role, names, req, meaning in TABLE_INPUT_COLUMNS]
    return "\n".join(lines)


SCHEMA_MARKDOWN = f"""\
## Data set files (schema version {SCHEMA_VERSION})

`training.parquet`: one row per (sentence, factual class, alternative class). A sentence that matches a
class yields N-1 rows for N classes (one per other class); a sentence holding targets of two classes
yields rows for each class (the other class's words stay visible). All columns are non-null.

{_table(_TRAINING_COLUMNS)}

`neutral.parquet`: sentences for neutral evaluation.

{_table(_NEUTRAL_COLUMNS)}

`summary.json`: row counts per class, split, class x split, target word, transition, plus the neutral
count and the sha256 of both parquet files. Files are byte-identical for the same inputs and seed.

## Labelled input tables (`data.table`)

A .parquet, .csv or .jsonl file, or a `datasets` `save_to_disk` folder (a DatasetDict's parts are
concatenated; named train/validation/test they give the split), with one row per masked sentence. Other
columns (e.g. the reference's `transition`, `feature_class_id`, `text`) are ignored; `data.table_columns`
maps a role to another column, e.g. `{{masked: sentence}}`.

{_input_table()}

Rows with the same masked text, factual word, class and split are one sentence (exact duplicates are
dropped); `max_per_class` and `balance` count sentences, as for a corpus. The classes are `data.classes`
(its order; a class given with `[]` takes its words from the table; configured words come first), else the
table's in order of first appearance; the first class is label +1. A class's words are its factual words
plus the alternatives given for it. With a split column, the table's splits are kept and every split with a
ratio > 0 must hold rows of every class. The table has no neutral sentences: `data.neutral_corpus` is
required. The output is the training.parquet above (`text` = `masked` with the factual word filled in,
`n_masks` = 1).
"""


def describe_schema() -> str:
    """Markdown description of the data set files."""
    return SCHEMA_MARKDOWN


def check_columns(df: Any, kind: str = "training") -> None:
    """Raise DataError if `df` lacks a column of the `kind` ('training'|'neutral') schema."""
    expected = TRAINING_COLUMNS if kind == "training" else NEUTRAL_COLUMNS
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise DataError(f"{kind} data lacks column(s) {', '.join(missing)} (has: "
                        f"{', '.join(map(str, df.columns))}); create it with gradiend_core.data.creation")


def to_arrow(df: Any, kind: str = "training") -> pa.Table:
    """Cast a DataFrame to the fixed schema: column order, dtypes, no pandas index/metadata."""
    check_columns(df, kind)
    schema = TRAINING_SCHEMA if kind == "training" else NEUTRAL_SCHEMA
    arrays = []
    for field in schema:
        values = df[field.name].tolist()
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
            raise DataError(f"{kind} column '{field.name}' cannot be stored as {field.type}: {e}; "
                            f"fix the values") from None
        if arrays[-1].null_count:
            raise DataError(f"{kind} column '{field.name}' has {arrays[-1].null_count} missing value(s); "
                            f"every column must be filled")
    return pa.Table.from_arrays(arrays, schema=schema)


def from_arrow(table: pa.Table, kind: str = "training"):
    """DataFrame with the schema's column order and integer dtypes."""
    df = table.to_pandas()
    check_columns(df, kind)
    df = df[TRAINING_COLUMNS if kind == "training" else NEUTRAL_COLUMNS]
    return df.astype({c: t for c, t in INT_DTYPES.items() if c in df.columns})
