"""Labelled tables (data.table): every file format, our column names and the reference's, explicit column
maps, given or drawn splits and alternatives, classes from the config or the table, and every bad input."""
import hashlib
import json
import sys

import pandas as pd
import pytest

from gradiend_core.data import schema
from gradiend_core.data.corpus import class_map, training_data
from gradiend_core.data.creation import parquet_bytes
from gradiend_core.errors import ConfigError, DataError
from gradiend_core.experiment import DataSection


def sentences(n=10):
    """n rows per class: 3SG (he/she), 3PL (they); split 8/1/1 per class."""
    rows = []
    for i in range(n):
        split = "train" if i < n - 2 else ("validation" if i == n - 2 else "test")
        rows.append({"masked": f"[MASK] opened door number {i} .", "factual": "He" if i % 2 else "she",
                     "factual_class": "3SG", "split": split})
        rows.append({"masked": f"then [MASK] closed window {i} .", "factual": "they",
                     "factual_class": "3PL", "split": split})
    return pd.DataFrame(rows)


def write(df: pd.DataFrame, path):
    suffix = path.suffix
    if suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict("records")))
    return path


def section(table, **kw) -> DataSection:
    """A table data section without the pipeline's caps (every row kept)."""
    kw = {"table": str(table), "neutral_corpus": "unused.txt", "builtin": None, "balance": "none",
          "max_per_class": None, **kw}
    return DataSection(**kw).validate()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_each_format_gives_the_training_schema_with_the_given_splits(tmp_path, suffix):
    df = training_data(section(write(sentences(), tmp_path / f"t{suffix}")))
    assert list(df.columns) == schema.TRAINING_COLUMNS and len(df) == 20
    assert df.groupby("factual_class")["split"].value_counts().to_dict() == {
        ("3PL", "train"): 8, ("3PL", "validation"): 1, ("3PL", "test"): 1,
        ("3SG", "train"): 8, ("3SG", "validation"): 1, ("3SG", "test"): 1}
    r = df[df.masked == "[MASK] opened door number 1 ."].iloc[0]
    assert (r.text, r.factual, r.target_word, r.n_masks) == ("He opened door number 1 .", "He", "he", 1)
    assert (r.alternative, r.alternative_class, r.transition, r.label) == ("They", "3PL", "3SG->3PL", 1)
    assert set(df[df.factual_class == "3PL"].alternative) <= {"he", "she"}  # drawn from 3SG, re-cased
    assert list(df.label.unique()) == [1, -1]  # first class (of the table) is +1


def test_formats_give_identical_bytes(tmp_path):
    got = {s: hashlib.sha256(parquet_bytes(training_data(section(write(sentences(), tmp_path / f"t{s}")))))
           .hexdigest() for s in (".parquet", ".csv", ".jsonl")}
    assert len(set(got.values())) == 1, got


def test_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets", reason="`datasets` is not installed: the save_to_disk "
                                                      "format is tested where it is (pip install datasets)")
    datasets.Dataset.from_pandas(sentences()).save_to_disk(str(tmp_path / "ds"))
    assert len(training_data(section(tmp_path / "ds"))) == 20
    # a DatasetDict of splits: its parts' names are the split
    df = sentences().rename(columns={"factual_class": "label_class", "factual": "label"})
    parts = {s: datasets.Dataset.from_pandas(g.drop(columns="split"), preserve_index=False)
             for s, g in df.groupby("split")}
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "dd"))
    out = training_data(section(tmp_path / "dd"))
    assert out.groupby("split").size().to_dict() == {"test": 2, "train": 16, "validation": 2}


def test_save_to_disk_without_datasets_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DataError, match="pip install datasets"):
        class_map(section(tmp_path / "ds"))


def test_reference_unified_names_are_read_as_they_are(tmp_path):
    """The reference's merged table: label_class/label, explicit alternatives, val split, arrow transitions."""
    df = sentences().rename(columns={"factual": "label", "factual_class": "label_class"})
    df["alternative_class"] = df.label_class.map({"3SG": "3PL", "3PL": "3SG"})
    df["alternative"] = df.label_class.map({"3SG": "they", "3PL": "it"})
    df["transition"] = df.label_class + "\u2192" + df.alternative_class
    df["feature_class_id"] = df.label_class
    df["split"] = df.split.replace({"validation": "val"})
    out = training_data(section(write(df, tmp_path / "merged.parquet")))
    assert len(out) == 20 and (out.split == "validation").sum() == 2
    r = out[out.masked == "[MASK] opened door number 1 ."].iloc[0]
    assert (r.factual, r.alternative, r.transition) == ("He", "They", "3SG->3PL")  # re-cased like the factual
    assert set(out[out.factual_class == "3PL"].alternative) == {"it"}


def test_class_words_include_the_alternatives_given(tmp_path):
    df = sentences()
    df["alternative_class"] = df.factual_class.map({"3SG": "3PL", "3PL": "3SG"})
    df["alternative"] = df.factual_class.map({"3SG": "they", "3PL": "it"})
    assert class_map(section(write(df, tmp_path / "t.csv"))) == {"3SG": ["she", "he", "it"], "3PL": ["they"]}


def test_required_unified_names_and_an_explicit_column_map(tmp_path):
    df = sentences().rename(columns={"masked": "sentence", "factual": "word", "split": "part"})
    df["alternative_class"] = df.factual_class.map({"3SG": "3PL", "3PL": "3SG"})
    df["alternative"] = "x"  # present but mapped to another column below
    df["other"] = df.factual_class.map({"3SG": "they", "3PL": "she"})
    cols = {"masked": "sentence", "factual": "word", "split": "part", "alternative": "other"}
    out = training_data(section(write(df, tmp_path / "t.jsonl"), table_columns=cols))
    assert len(out) == 20 and set(out.alternative.str.lower()) == {"they", "she"}
    assert (out.split == "test").sum() == 2


def test_without_split_column_the_ratios_split_each_class_seeded(tmp_path):
    path = write(sentences(20).drop(columns="split"), tmp_path / "t.parquet")
    a, b = training_data(section(path)), training_data(section(path))
    assert a.equals(b)
    assert a.groupby("factual_class")["split"].value_counts().to_dict()[("3SG", "train")] == 16
    c = training_data(section(path, seed=7))
    assert not a.equals(c) and sorted(a.masked) == sorted(c.masked)
    df = sentences(20).drop(columns="split")
    df.loc[df.factual_class == "3PL", "factual"] = ["they", "them"] * 10
    v = training_data(section(write(df, tmp_path / "v.csv"), split_mode="vocabulary", train_ratio=0.5,
                              validation_ratio=0.0, test_ratio=0.5))
    assert v[v.factual_class == "3SG"].groupby("split")["target_word"].nunique().to_dict() == {"test": 1, "train": 1}


def test_missing_alternative_gives_one_drawn_row_per_other_class(tmp_path):
    df = sentences().drop(columns="split")
    df = pd.concat([df, pd.DataFrame([{"masked": f"I saw [MASK] {i} .", "factual": "you",
                                       "factual_class": "2SG"} for i in range(10)])])
    out = training_data(section(write(df, tmp_path / "t.csv")))
    assert len(out) == 30 * 2
    assert out[out.factual_class == "2SG"].alternative_class.value_counts().to_dict() == {"3SG": 10, "3PL": 10}
    assert out.groupby("factual_class").label.first().to_dict() == {"3SG": 1, "3PL": -1, "2SG": 0}


def test_duplicate_rows_are_one_sentence(tmp_path):
    df = pd.concat([sentences(), sentences()])
    assert len(training_data(section(write(df, tmp_path / "t.csv")))) == 20


def test_classes_from_config_order_and_words(tmp_path):
    path = write(sentences(), tmp_path / "t.parquet")
    assert class_map(section(path)) == {"3SG": ["she", "he"], "3PL": ["they"]}  # the table's, by appearance
    d = section(path, classes={"3PL": [], "3SG": ["it"]})
    assert class_map(d) == {"3PL": ["they"], "3SG": ["it", "she", "he"]}  # configured words, then the table's
    out = training_data(d)
    assert out.groupby("factual_class").label.first().to_dict() == {"3PL": 1, "3SG": -1}
    with pytest.raises(DataError, match="class '3SG' .* data.classes does not list"):
        class_map(section(path, classes={"3PL": [], "1SG": ["i"]}))
    with pytest.raises(DataError, match="class '1SG' has no row in data.table"):
        training_data(section(path, classes={"3PL": [], "3SG": [], "1SG": ["i"]}))


def test_max_per_class_and_balance_apply_to_sentences(tmp_path):
    df = sentences(10).drop(columns="split")
    df = pd.concat([df, pd.DataFrame([{"masked": f"and [MASK] ran {i}", "factual": "they",
                                       "factual_class": "3PL"} for i in range(10)])])
    out = training_data(section(write(df, tmp_path / "t.csv"), balance="equal", max_per_class=None))
    assert out.factual_class.value_counts().to_dict() == {"3SG": 10, "3PL": 10}


def _bad(tmp_path, df, name="t.csv", **kw):
    path = write(df, tmp_path / name)
    d = section(path, **kw)
    class_map(d)
    training_data(d)


@pytest.mark.parametrize("change, needle", [
    (lambda df: df.drop(columns="factual_class"), "no factual_class column (looked for 'factual_class' or "
                                                  "'label_class'; columns found: masked, factual, split)"),
    (lambda df: df.assign(masked=df.masked.str.replace("[MASK]", "___", regex=False)), "holds 0 [MASK]"),
    (lambda df: df.assign(masked=df.masked + " [MASK]"), "holds 2 [MASK] placeholders, needs exactly one"),
    (lambda df: df.assign(split=df.split.replace({"test": "dev"})), "split 'dev' is not one of"),
    (lambda df: df.assign(factual=df.factual.where(df.index != 3, "")), "row 4: empty 'factual'"),
    (lambda df: df.assign(split=df.split.replace({"test": "train"})), "class '3SG' has no 'test' row"),
    (lambda df: df.assign(alternative_class=df.factual_class), "is the factual class"),
    (lambda df: df.assign(alternative="they", alternative_class=df.factual_class.map({"3SG": "3PL", "3PL": "3SG"})),
     "word 'they' is in classes '3SG' and '3PL' of data.table"),
])
def test_bad_rows_name_the_problem(tmp_path, change, needle):
    with pytest.raises(DataError) as e:
        _bad(tmp_path, change(sentences()))
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_empty_split_is_fine_when_its_ratio_is_zero(tmp_path):
    df = sentences().assign(split=lambda d: d.split.replace({"test": "train"}))
    out = training_data(section(write(df, tmp_path / "t.csv"), train_ratio=0.9, test_ratio=0.0))
    assert (out.split == "test").sum() == 0


def test_alternative_without_class(tmp_path):
    df = sentences()
    df["alternative"] = df.factual_class.map({"3SG": "they", "3PL": "it"})
    out = training_data(section(write(df, tmp_path / "t.csv")))
    assert set(out.transition) == {"3SG->3PL", "3PL->3SG"}
    three = pd.concat([df, pd.DataFrame([{"masked": "[MASK] x", "factual": "you", "factual_class": "2SG",
                                          "split": "train", "alternative": "he"}])])
    with pytest.raises(DataError, match="no alternative_class, and 3 classes"):
        _bad(tmp_path, three)


def test_file_errors(tmp_path):
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unknown table format '\.xlsx'; use a \.csv/\.parquet/\.jsonl file"):
        class_map(section(tmp_path / "t.xlsx"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="cannot read parquet file"):
        class_map(section(tmp_path / "bad.parquet"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="is a folder but not a Hugging Face `save_to_disk` dataset"):
        class_map(section(tmp_path / "folder"))
    (tmp_path / "empty.csv").write_text("masked,factual,factual_class\n")
    with pytest.raises(DataError, match="has no rows"):
        class_map(section(tmp_path / "empty.csv"))


def test_config_checks(tmp_path):
    with pytest.raises(ConfigError, match="set data.neutral_corpus"):
        DataSection(table="t.csv", builtin=None).validate()
    with pytest.raises(ConfigError, match="not both"):
        DataSection(table="t.csv", corpus="c.txt", neutral_corpus="n.txt").validate()
    with pytest.raises(ConfigError, match="unknown column role 'maskd' \\(did you mean 'masked'\\?\\)"):
        DataSection(table="t.csv", neutral_corpus="n.txt", table_columns={"maskd": "x"}).validate()
    with pytest.raises(ConfigError, match="only read with data.table"):
        DataSection(table_columns={"masked": "x"}).validate()


def test_head_fitting_texts_are_the_filled_sentences(tmp_path):
    from gradiend_core.data.corpus import corpus_texts

    texts = corpus_texts(section(write(sentences(), tmp_path / "t.csv")))
    assert texts[:2] == ["she opened door number 0 .", "then they closed window 0 ."] and len(texts) == 20
