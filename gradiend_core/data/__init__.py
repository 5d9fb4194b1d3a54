"""Data creation: base texts (sources), documents to sentences (documents), masking/pairing/splitting
(creation), labelled tables (tables, labelled), built-in sets, parquet schema."""
from gradiend_core.data.builtin import (BUILTIN_DATASETS, builtin_texts, builtin_vocabulary, gender_texts,
                                        neutral_texts, person_number_texts, pronoun_number_texts)
from gradiend_core.data.creation import (DataConfig, create_dataset, create_neutral_data, create_training_data,
                                         neutral_exclude_words, read_dataset, summarize, write_dataset)
from gradiend_core.data.schema import (NEUTRAL_COLUMNS, NEUTRAL_SCHEMA, TRAINING_COLUMNS, TRAINING_SCHEMA,
                                       describe_schema)
from gradiend_core.data.documents import PreprocessConfig, segments
from gradiend_core.data.labelled import create_table_data
from gradiend_core.data.sources import load_texts
from gradiend_core.data.tables import LabelledTable, load_table

__all__ = [
    "BUILTIN_DATASETS", "builtin_texts", "builtin_vocabulary", "gender_texts", "neutral_texts", "person_number_texts",
    "pronoun_number_texts", "DataConfig", "create_dataset", "create_neutral_data", "create_training_data",
    "neutral_exclude_words", "read_dataset", "summarize", "write_dataset", "NEUTRAL_COLUMNS", "NEUTRAL_SCHEMA",
    "TRAINING_COLUMNS", "TRAINING_SCHEMA", "describe_schema", "load_texts", "PreprocessConfig", "segments",
    "create_table_data", "LabelledTable", "load_table",
]
