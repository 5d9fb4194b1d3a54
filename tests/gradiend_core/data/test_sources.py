"""load_texts: every supported source, cleaning, seeded shuffle/truncation and every error case."""
import json
import sys

import pandas as pd
import pytest

from gradiend_core.data.sources import load_texts
from gradiend_core.errors import DataError

TEXTS = ["First sentence here.", "  Second one, padded.  ", "", "   ", "Third line."]
CLEAN = ["First sentence here.", "Second one, padded.", "Third line."]


def test_list_is_stripped_filtered_and_shuffled_deterministically():
    a = load_texts(TEXTS, seed=3)
    assert sorted(a) == sorted(CLEAN)
    assert a == load_texts(TEXTS, seed=3)
    many = [f"sentence number {i}" for i in range(50)]
    assert load_texts(many, seed=1) != load_texts(many, seed=2)
    assert sorted(load_texts(many, seed=1)) == sorted(many)


def test_max_texts_is_a_seeded_sample():
    many = [f"sentence number {i}" for i in range(50)]
    sub = load_texts(many, max_texts=7, seed=5)
    assert len(sub) == 7 and len(set(sub)) == 7 and set(sub) <= set(many)
    assert sub == load_texts(many, max_texts=7, seed=5)
    with pytest.raises(DataError, match="max_texts"):
        load_texts(many, max_texts=0)


def test_txt_one_text_per_line_with_bom(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_bytes(b"\xef\xbb\xbf" + "\n".join(TEXTS).encode("utf-8") + b"\r\n")
    assert sorted(load_texts(p)) == sorted(CLEAN)
    assert sorted(load_texts(str(p))) == sorted(CLEAN)


def test_csv_parquet_jsonl_and_dataframe(tmp_path):
    df = pd.DataFrame({"id": range(len(TEXTS)), "body": TEXTS})
    df.to_csv(tmp_path / "c.csv", index=False)
    df.to_parquet(tmp_path / "c.parquet", index=False)
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"body": t, "n": 1}) for t in TEXTS) + "\n\n",
                                      encoding="utf-8")
    for src in (tmp_path / "c.csv", tmp_path / "c.parquet", tmp_path / "c.jsonl", df):
        assert sorted(load_texts(src, text_column="body")) == sorted(CLEAN), src


def test_csv_keeps_commas_quotes_and_drops_missing_values(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('id,text\n1,"He said, ""yes"", twice."\n2,\n3,NA\n4,Plain.\n', encoding="utf-8")
    # empty cell dropped; the literal "NA" is text, not a missing value
    assert sorted(load_texts(p)) == sorted(['He said, "yes", twice.', "NA", "Plain."])


def test_missing_file_is_named(tmp_path):
    for name in ("nope.txt", "nope.csv", "nope.parquet", "nope.jsonl"):
        with pytest.raises(DataError, match=f"not found: .*{name}"):
            load_texts(tmp_path / name)


def test_non_utf8_file_names_file_and_byte_offset(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes("caf".encode() + b"\xe9 ok\nfine\n")  # latin-1 e-acute at byte 3
    with pytest.raises(DataError, match=r"latin\.txt is not valid UTF-8 \(byte 3"):
        load_texts(p)
    q = tmp_path / "latin.csv"
    q.write_bytes(b"\xef\xbb\xbftext\nabc\nd\xff\n")  # BOM counts: 3 + 5 + 5 = byte 13
    with pytest.raises(DataError, match=r"latin\.csv is not valid UTF-8 \(byte 13"):
        load_texts(q)


def test_missing_text_column_lists_columns(tmp_path):
    df = pd.DataFrame({"sentence": ["a b"], "lang": ["en"]})
    df.to_csv(tmp_path / "x.csv", index=False)
    df.to_parquet(tmp_path / "x.parquet", index=False)
    (tmp_path / "x.jsonl").write_text(json.dumps({"sentence": "a b", "lang": "en"}) + "\n", encoding="utf-8")
    for src in (tmp_path / "x.csv", tmp_path / "x.parquet", tmp_path / "x.jsonl", df):
        with pytest.raises(DataError, match="no column 'text'.*sentence, lang"):
            load_texts(src)


def test_bad_jsonl_line_is_reported(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok"}\n{"text": broken}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_texts(p)


def test_empty_corpus(tmp_path):
    with pytest.raises(DataError, match="no non-empty text"):
        load_texts(["", "  ", None])
    p = tmp_path / "empty.txt"
    p.write_text("\n\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no non-empty text in .*empty\.txt"):
        load_texts(p)


def test_hub_id_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(DataError, match="install `datasets`"):
        load_texts("someone/some-corpus")
    import os
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"  # offline forced before any import attempt


def test_unsupported_source_type():
    with pytest.raises(DataError, match="unsupported text source"):
        load_texts(42)
