"""Data creation: matching, masking, alternatives, labels, splits, neutral data, parquet output, errors."""
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from gradiend_core.data import schema
from gradiend_core.data.creation import (DataConfig, create_dataset, create_neutral_data, create_training_data,
                                         read_dataset, recase, split_counts, summarize, write_dataset)
from gradiend_core.errors import ConfigError, DataError


def uncapped(**kw) -> DataConfig:
    """DataConfig without the pipeline's caps (no balancing, every sentence kept), as these tests assume."""
    return DataConfig(**{"balance": "none", "max_per_class": None, "neutral_max": None, **kw})

NUMBER = {"3SG": ["he", "she", "it"], "3PL": ["they"]}
ALL_TRAIN = dict(train_ratio=1.0, validation_ratio=0.0, test_ratio=0.0)


def make(texts, classes=NUMBER, **kw):
    return create_training_data(texts, uncapped(classes=classes, **{**ALL_TRAIN, **kw}))


def row(df, text, cls):
    sel = df[(df.text == text) & (df.factual_class == cls)]
    assert len(sel) == 1, (text, cls, len(sel))
    return sel.iloc[0]


# ------------------------------------------------------------------------------------------- masking
def test_masks_all_occurrences_keeps_casing_and_recases_alternative():
    df = make(["He said that he was tired.", "They went home."])
    assert list(df.columns) == schema.TRAINING_COLUMNS
    r = row(df, "He said that he was tired.", "3SG")
    assert r.masked == "[MASK] said that [MASK] was tired."
    assert (r.factual, r.alternative, r.target_word, r.n_masks) == ("He", "They", "he", 2)
    assert (r.alternative_class, r.transition, r.label) == ("3PL", "3SG->3PL", 1)
    r = row(df, "They went home.", "3PL")
    assert r.masked == "[MASK] went home." and r.factual == "They" and r.label == -1
    assert r.alternative in {"He", "She", "It"}  # drawn from 3SG's observed words, Title-cased


def test_upper_and_lower_casing_of_alternative():
    df = make(["HE SHOUTED AT THE SKY.", "Later they left.", "Then she smiled."])
    assert row(df, "HE SHOUTED AT THE SKY.", "3SG").alternative == "THEY"
    assert row(df, "Then she smiled.", "3SG").alternative == "they"
    assert row(df, "Later they left.", "3PL").alternative in {"he", "she"}  # only observed 3SG words
    assert recase("each other", "Themselves") == "Each other"
    assert recase("they", "I") == "They"


def test_punctuation_around_targets():
    df = make(["Yes, he, of course, agreed.", "The note (she) wrote was short.", "They?! Never."])
    assert row(df, "Yes, he, of course, agreed.", "3SG").masked == "Yes, [MASK], of course, agreed."
    assert row(df, "The note (she) wrote was short.", "3SG").masked == "The note ([MASK]) wrote was short."
    assert row(df, "They?! Never.", "3PL").masked == "[MASK]?! Never."


def test_word_boundaries():
    texts = ["There is the cat.", "She went with him and then left.", "They sat there."]
    df = make(texts)
    # "it" must not match inside "with"; "he" not inside "There"/"then"/"there"/"The"
    r = row(df, "She went with him and then left.", "3SG")
    assert r.masked == "[MASK] went with him and then left." and r.n_masks == 1
    assert set(df.text) == {"She went with him and then left.", "They sat there."}
    df2 = make(texts + ["A dog barked."], classes={"DEF": ["the"], "INDEF": ["a"]})
    assert row(df2, "There is the cat.", "DEF").masked == "There is [MASK] cat."
    assert "They sat there." not in set(df2.text)


def test_multi_word_targets():
    classes = {"RECIP": ["each other"], "REFL": ["themselves"]}
    df = make(["They helped each  other a lot.", "They blamed themselves.", "Each other day was calm."], classes)
    r = row(df, "They helped each  other a lot.", "RECIP")
    assert (r.masked, r.factual, r.target_word, r.alternative) == \
        ("They helped [MASK] a lot.", "each  other", "each other", "themselves")
    r = row(df, "Each other day was calm.", "RECIP")
    assert r.masked == "[MASK] day was calm." and r.alternative == "Themselves"
    assert row(df, "They blamed themselves.", "REFL").alternative == "each other"


def test_sentence_with_targets_of_both_classes_gives_a_row_per_class():
    s = "He told the guests that they were late."
    df = make([s])
    assert len(df) == 2
    assert row(df, s, "3SG").masked == "[MASK] told the guests that they were late."
    assert row(df, s, "3PL").masked == "He told the guests that [MASK] were late."


def test_three_classes_give_n_minus_one_rows_and_labels():
    classes = {"A": ["alpha"], "B": ["beta"], "C": ["gamma", "delta"]}
    df = make(["alpha one", "beta two", "gamma three", "delta four"], classes)
    assert len(df) == 4 * 2
    assert dict(zip(df.factual_class, df.label)) == {"A": 1, "B": -1, "C": 0}
    c = df[df.factual_class == "C"]
    assert sorted(c.transition) == ["C->A", "C->A", "C->B", "C->B"]
    assert set(df[df.transition == "A->C"].alternative) <= {"gamma", "delta"}
    assert df.row_id.tolist() == list(range(len(df)))


def test_min_left_context_words_filters_spans_individually():
    s = "He knew that at the end of the day he would go."
    df = make([s, "So, after all that, they stayed."], min_left_context_words=3)
    r = row(df, s, "3SG")
    assert r.masked == "He knew that at the end of the day [MASK] would go." and r.n_masks == 1
    with pytest.raises(DataError, match="class '3PL' matched no sentence with >= 5 words of left context"):
        make([s, "So, after all that, they stayed."], min_left_context_words=5)


def test_duplicate_lines_are_dropped_and_texts_split_on_newlines():
    df = make(["He ran.\nThey ran.", "He ran.", "  ", "They ran."])
    assert sorted(df.text) == ["He ran.", "They ran."]


# --------------------------------------------------------------------------------------- determinism
def corpus(n=40):
    he = [f"On day {i} {w} walked to the market." for i in range(n) for w in ("he", "she", "it")]
    return he + [f"On day {i} they walked to the market." for i in range(n)]


def test_same_seed_byte_identical_files_and_different_seed_changes_alternatives(tmp_path):
    cfg = uncapped(classes=NUMBER, seed=7, neutral_exclude=["market"])
    texts = corpus() + ["A quiet afternoon.", "Rain fell on the town.", "The market opened early."]
    for out in ("a", "b"):
        tr, ne = create_dataset(texts, cfg)
        write_dataset(tmp_path / out, tr, ne)
    for name in ("training.parquet", "neutral.parquet", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert sorted(ne.text) == ["A quiet afternoon.", "Rain fell on the town."]
    other = create_training_data(texts, uncapped(classes=NUMBER, seed=8))
    key = ["text", "factual_class"]
    a = tr.set_index(key).alternative
    b = other.set_index(key).alternative.reindex(a.index)
    assert (a != b).sum() > 10  # 3PL rows re-draw among he/she/it


def test_parquet_schema_and_roundtrip(tmp_path):
    tr = create_training_data(corpus(), uncapped(classes=NUMBER))
    ne = create_neutral_data(["No pronoun here.", "Another plain line."], ["he"])
    summary = write_dataset(tmp_path, tr, ne)
    table = pq.read_table(tmp_path / "training.parquet")
    assert table.schema.equals(schema.TRAINING_SCHEMA)  # no pandas index, fixed dtypes
    assert table.schema.metadata is None or b"pandas" not in table.schema.metadata
    tr2, ne2 = read_dataset(tmp_path)
    pd.testing.assert_frame_equal(tr2, tr)
    assert tr2.dtypes["label"] == "int8" and tr2.dtypes["n_masks"] == "int16" and tr2.dtypes["row_id"] == "int64"
    assert ne2.text.tolist() == ne.text.tolist()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["classes"] == {"3SG": 120, "3PL": 40} and on_disk["neutral"] == 2
    assert on_disk["target_words"]["3SG"] == {"he": 40, "it": 40, "she": 40}
    assert on_disk["class_splits"]["3PL"] == {"train": 32, "validation": 4, "test": 4}
    assert sum(on_disk["splits"].values()) == on_disk["n_rows"] == len(tr)


# -------------------------------------------------------------------------------------------- splits
@pytest.mark.parametrize("n,expected", [(9, (7, 1, 1)), (10, (8, 1, 1)), (15, (12, 2, 1)), (50, (40, 5, 5))])
def test_split_counts_reference_rounding(n, expected):
    c = split_counts(n, {"train": 0.8, "validation": 0.1, "test": 0.1})
    assert (c["train"], c["validation"], c["test"]) == expected


def test_random_splits_respect_ratios_per_class_and_never_share_sentences():
    df = create_training_data(corpus(50), uncapped(classes=NUMBER, train_ratio=0.6, validation_ratio=0.2,
                                                     test_ratio=0.2))
    for cls, n in (("3SG", 150), ("3PL", 50)):
        got = df[df.factual_class == cls].split.value_counts().to_dict()
        assert got == {"train": round(n * 0.6), "validation": round(n * 0.2), "test": n - round(n * 0.6) - round(n * 0.2)}
    assert df.groupby("text").split.nunique().max() == 1


def test_vocabulary_splits_never_leak_held_out_words():
    a_words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    b_words = ["golf", "hotel", "india", "juliet", "kilo", "lima"]
    texts = [f"Item {i} mentions {w} today." for i in range(12) for w in a_words + b_words]
    df = create_training_data(texts, uncapped(classes={"A": a_words, "B": b_words}, split_mode="vocabulary"))
    owner = {}
    for cls in ("A", "B"):
        sub = df[df.factual_class == cls]
        per_split = {s: set(sub[sub.split == s].target_word) for s in schema.SPLITS}
        assert all(per_split.values())  # every split holds >= 1 word of every class
        for s, ws in per_split.items():
            for w in ws:
                assert owner.setdefault(w, s) == s  # a word lives in one split only
    for _, r in df.iterrows():  # alternatives come from same-split words of the other class
        assert owner[r.alternative.lower()] == r.split
        assert owner[r.target_word] == r.split
    assert df[df.factual_class == "A"].groupby("split").target_word.nunique().to_dict() == \
        {"train": 4, "validation": 1, "test": 1}  # rounding gives 5/1/0; the empty test split takes one


def test_max_per_class_and_balance():
    texts = corpus(40)
    df = create_training_data(texts, uncapped(classes=NUMBER, max_per_class=30))
    assert df.factual_class.value_counts().to_dict() == {"3SG": 30, "3PL": 30}
    df = create_training_data(texts, uncapped(classes=NUMBER, balance="equal"))
    assert df.factual_class.value_counts().to_dict() == {"3SG": 40, "3PL": 40}
    df = create_training_data(texts, uncapped(classes=NUMBER))
    assert df.factual_class.value_counts().to_dict() == {"3SG": 120, "3PL": 40}


# ------------------------------------------------------------------------------------------- neutral
def test_neutral_data_uses_word_boundaries_dedupes_and_samples_with_seed():
    texts = ["The weather is nice.", "He left.", "There was a storm.", "Within an hour, rain.", "It rained.",
             "The weather is nice.", "Each other day.", "Each  other time."]
    df = create_neutral_data(texts, ["he", "it", "each other"])
    assert df.text.tolist() == ["The weather is nice.", "There was a storm.", "Within an hour, rain."]
    assert df.row_id.tolist() == [0, 1, 2] and list(df.columns) == schema.NEUTRAL_COLUMNS
    many = [f"Plain sentence number {i}." for i in range(100)]
    s1 = create_neutral_data(many, [], max_rows=10, seed=1).text.tolist()
    assert s1 == create_neutral_data(many, [], max_rows=10, seed=1).text.tolist()
    assert s1 != create_neutral_data(many, [], max_rows=10, seed=2).text.tolist()
    assert len(s1) == 10 and s1 == sorted(s1, key=many.index)  # corpus order kept


def test_summarize_counts():
    df = make(["He ran.", "She ran.", "They ran.", "He sat."])
    s = summarize(df, None)
    assert s["classes"] == {"3SG": 3, "3PL": 1} and s["neutral"] == 0
    assert s["target_words"]["3SG"] == {"he": 2, "she": 1}
    assert s["transitions"] == {"3PL->3SG": 1, "3SG->3PL": 3}


# -------------------------------------------------------------------------------------------- errors
def test_class_with_no_match_names_the_words():
    with pytest.raises(DataError, match=r"class '3SG' matched no sentence; searched words: he, she, it"):
        make(["They ran.", "Nobody else."])


def test_ratios_must_sum_to_one():
    with pytest.raises(ConfigError, match="sum to 1.1"):
        uncapped(classes=NUMBER, train_ratio=0.9, validation_ratio=0.1, test_ratio=0.1).validate()
    with pytest.raises(ConfigError, match="ratio"):  # validated before any text is looked at
        create_training_data([], uncapped(classes=NUMBER, train_ratio=0.5))


def test_empty_corpus():
    with pytest.raises(DataError, match="corpus is empty"):
        make(["", "   ", "\n\n"])


def test_duplicate_class_names_and_shared_words():
    with pytest.raises(ConfigError, match="duplicate class name '3SG'"):
        uncapped(classes=[("3SG", ["he"]), ("3SG", ["they"])]).validate()
    with pytest.raises(ConfigError, match="duplicate class name 'A'"):
        uncapped(classes=[{"name": "A", "words": ["x"]}, {"name": "A", "words": ["y"]}]).validate()
    with pytest.raises(ConfigError, match="'he' is in classes 'M' and 'X'"):
        uncapped(classes={"M": ["he", "him"], "X": ["He"]}).validate()
    with pytest.raises(ConfigError, match="at least 2 classes"):
        uncapped(classes={"M": ["he"]}).validate()


@pytest.mark.parametrize("kw,msg", [
    (dict(balance="strict"), "balance must be"), (dict(balance="cap"), "needs max_per_class"),
    (dict(split_mode="group"), "split_mode"), (dict(max_per_class=0), "max_per_class"),
    (dict(min_left_context_words=-1), "min_left_context_words"), (dict(neutral_exclude="him"), "neutral_exclude"),
    (dict(train_ratio=0.0, validation_ratio=0.5, test_ratio=0.5), "train split"),
])
def test_other_config_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        uncapped(classes=NUMBER, **kw).validate()


def test_too_few_rows_for_splits_names_class_and_counts():
    texts = [f"Day {i}: he ran." for i in range(20)] + [f"Day {i}: they ran." for i in range(5)]
    with pytest.raises(DataError, match=r"class '3PL' has 5 row\(s\).*would get 4/0/1.*needs at least 8"):
        create_training_data(texts, uncapped(classes=NUMBER))


def test_vocabulary_split_needs_enough_words():
    texts = [f"Day {i}: he ran and rested." for i in range(20)] + [f"Day {i}: they ran." for i in range(20)]
    with pytest.raises(DataError, match=r"class '3SG' has 1 distinct matched word\(s\) \(he\).*at least 3"):
        create_training_data(texts, uncapped(classes=NUMBER, split_mode="vocabulary"))
