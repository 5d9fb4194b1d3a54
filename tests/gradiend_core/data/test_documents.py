"""Documents (data.preprocess, folders of .txt files): sentence split, windows, length filters, de-duplication;
the default is one sentence per line, as data creation always did."""
import pytest

from gradiend_core.data.corpus import corpus_texts, neutral_texts, training_data
from gradiend_core.data.creation import create_neutral_data, split_sentences
from gradiend_core.data.documents import PreprocessConfig, segments, split_into_sentences
from gradiend_core.data.sources import load_texts
from gradiend_core.errors import ConfigError, DataError
from gradiend_core.experiment import DataSection, load_experiment

DOC = "He came home. They were out!  Was he sad? He was not.\n\nThey came back later. He smiled."


def test_default_is_one_segment_per_line_without_duplicates():
    texts = ["a b.\n\n  c d. e f.  \na b.", "c d. e f."]
    assert segments(texts) == split_sentences(texts) == ["a b.", "c d. e f."]
    assert segments(texts, PreprocessConfig(dedup=False)) == ["a b.", "c d. e f.", "a b.", "c d. e f."]


def test_sentences_windows_and_lengths():
    assert split_into_sentences("One. Two!  Three? Four") == ["One.", "Two!", "Three?", "Four"]
    assert split_into_sentences("Dr.Who ran . Then stopped.") == ["Dr.Who ran .", "Then stopped."]
    one = segments([DOC], PreprocessConfig(sentences=True))
    assert one == ["He came home.", "They were out!", "Was he sad?", "He was not.", "They came back later.",
                   "He smiled."]
    # windows never cross a line (paragraph) break: the last window of a paragraph may be shorter
    two = segments([DOC], PreprocessConfig(sentences=2))
    assert two == ["He came home. They were out!", "Was he sad? He was not.", "They came back later. He smiled."]
    three = segments([DOC], PreprocessConfig(sentences=3))
    assert three == ["He came home. They were out! Was he sad?", "He was not.", "They came back later. He smiled."]
    assert segments([DOC], PreprocessConfig(sentences=True, min_chars=11, max_chars=13)) == [
        "He came home.", "Was he sad?", "He was not."]  # 14, 21 and 10 characters are out
    assert segments(["Hi. Hi. Hi."], PreprocessConfig(sentences=True)) == ["Hi."]
    assert segments(["Hi. Hi. Hi."], PreprocessConfig(sentences=True, dedup=False)) == ["Hi."] * 3


def test_preprocess_settings_are_checked_when_the_experiment_loads():
    cfg = load_experiment(None, ["data.preprocess={sentences: 2, min_chars: 10}"])
    assert cfg.data.preprocess == PreprocessConfig(sentences=2, min_chars=10)
    for bad, needle in [("{sentences: 0}", "data.preprocess.sentences must be true, false or a window size"),
                        ("{min_chars: 9, max_chars: 3}", "min_chars (9) is above max_chars (3)"),
                        ("{max_chars: -1}", "data.preprocess.max_chars must be an integer >= 0"),
                        ("{sentence: true}", "did you mean 'sentences'")]:
        with pytest.raises(ConfigError) as e:
            load_experiment(None, [f"data.preprocess={bad}"])
        assert needle in str(e.value), str(e.value)


def write_folder(root):
    docs = root / "docs"
    (docs / "more").mkdir(parents=True)
    (docs / "a.txt").write_text("He opened the door. They waited outside.\nHe left. They stayed. He came back.\n")
    (docs / "more" / "b.txt").write_text("They sang loudly. The rain fell all day.\n\nHe opened the door. "
                                         "Birds flew over the hill.\n")
    (docs / "notes.md").write_text("not a document\n")
    return docs


def test_folder_of_documents(tmp_path):
    docs = write_folder(tmp_path)
    assert sorted(t[:9] for t in load_texts(docs)) == ["He opened", "They sang"]  # one text per .txt file
    d = DataSection(builtin=None, corpus=str(docs), classes={"3SG": ["he"], "3PL": ["they"]}, balance="none",
                    max_per_class=None, train_ratio=1.0, validation_ratio=0.0, test_ratio=0.0,
                    preprocess=PreprocessConfig(sentences=True)).validate()
    df = training_data(d)
    assert sorted(df.text) == sorted(["He opened the door.", "They waited outside.", "He left.", "They stayed.",
                                      "He came back.", "They sang loudly."])  # the duplicate is dropped
    neutral = create_neutral_data(neutral_texts(d), ["he", "they"], preprocess=d.preprocess)
    assert sorted(neutral.text) == ["Birds flew over the hill.", "The rain fell all day."]
    d.preprocess = PreprocessConfig(sentences=2, max_chars=40)
    # windows of 2 sentences within a paragraph; "He opened the door. Birds flew over the hill." is too long
    assert sorted(training_data(d).text) == ["He came back."] + ["He left. They stayed."] * 2 + [
        "He opened the door. They waited outside."] * 2 + ["They sang loudly. The rain fell all day."]


def test_empty_folder_and_folder_without_txt(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .txt file \\(it is empty\\); put one document per .txt file"):
        load_texts(tmp_path / "empty")
    (tmp_path / "md").mkdir()
    (tmp_path / "md" / "x.md").write_text("He ran.")
    with pytest.raises(DataError, match="holds no .txt file \\(found: x.md\\)"):
        corpus_texts(DataSection(builtin=None, corpus=str(tmp_path / "md"), classes={"a": ["he"], "b": ["x"]}))


def test_document_per_line_and_table_text_column(tmp_path):
    (tmp_path / "docs.txt").write_text("He ran. They hid.\nThey sang. He hid.\n")
    d = DataSection(builtin=None, corpus=str(tmp_path / "docs.txt"), classes={"3SG": ["he"], "3PL": ["they"]},
                    balance="none", max_per_class=None, train_ratio=1.0, validation_ratio=0.0, test_ratio=0.0,
                    preprocess=PreprocessConfig(sentences=True))
    assert sorted(training_data(d).text) == ["He hid.", "He ran.", "They hid.", "They sang."]
    (tmp_path / "docs.jsonl").write_text('{"body": "He ran. They hid."}\n{"body": "They sang. He hid."}\n')
    d.corpus, d.text_column = str(tmp_path / "docs.jsonl"), "body"
    assert sorted(training_data(d).text) == ["He hid.", "He ran.", "They hid.", "They sang."]


def test_nothing_passes_the_filters(tmp_path):
    d = DataSection(classes={"3SG": ["he"], "3PL": ["they"]}, preprocess=PreprocessConfig(min_chars=10_000))
    with pytest.raises(DataError, match="no sentence passes data.preprocess"):
        training_data(d)
