"""Built-in generators: counts, uniqueness, one slot per sentence, agreement, speed, vocabulary coverage."""
import re
import time
from collections import Counter

import pytest

from gradiend_core.data import builtin
from gradiend_core.data.builtin import (BUILTIN_DATASETS, builtin_texts, builtin_vocabulary, gender_texts,
                                        neutral_texts, person_number_texts, pronoun_number_texts)
from gradiend_core.data.creation import DataConfig, create_training_data, word_pattern
from gradiend_core.errors import ConfigError


def uncapped(**kw) -> DataConfig:
    """DataConfig without the pipeline's caps (no balancing, every sentence kept), as these tests assume."""
    return DataConfig(**{"balance": "none", "max_per_class": None, "neutral_max": None, **kw})

PRONOUNS = ("i me my mine myself you your yours yourself we us our ours ourselves he him his himself she her hers "
            "herself it its itself they them their theirs themselves this that these those who whom whose which "
            "someone somebody everyone everybody anyone anybody nobody something everything anything nothing").split()


def class_of(sentence, classes):
    """Class of every target word occurrence in the sentence."""
    return [c for c, ws in classes.items() for _ in word_pattern(ws).finditer(sentence)]


@pytest.fixture(scope="module")
def texts():
    out = {}
    for name, fn in (("pronoun_number", pronoun_number_texts), ("gender", gender_texts), ("neutral", neutral_texts),
                     ("person_number", person_number_texts)):
        t = time.perf_counter()
        out[name] = fn()
        out[name + "_s"] = time.perf_counter() - t
    return out


@pytest.mark.parametrize("name", ["pronoun_number", "gender"])
def test_counts_per_class_one_slot_no_duplicates_and_lengths(texts, name):
    xs, classes = texts[name], BUILTIN_DATASETS[name]["classes"]
    assert len(xs) == len(set(xs))
    per_sentence = [class_of(s, classes) for s in xs]
    assert all(len(c) == 1 for c in per_sentence), [s for s, c in zip(xs, per_sentence) if len(c) != 1][:3]
    counts = Counter(c[0] for c in per_sentence)
    assert all(counts[c] >= 3000 for c in classes), counts
    lengths = [len(s.split()) for s in xs]
    assert 6 <= min(lengths) and max(lengths) <= 30
    assert len(set(lengths)) >= 12  # varied lengths
    assert texts[name + "_s"] < 1.0


@pytest.mark.parametrize("name", ["pronoun_number", "gender", "person_number"])
def test_variety_of_surface_patterns(texts, name):
    xs = texts[name]
    masked = [word_pattern([w for ws in BUILTIN_DATASETS[name]["classes"].values() for w in ws]).sub("_", s)
              for s in xs]
    # Neither the first three words nor the two words after the slot determine most sentences.
    openings = Counter(" ".join(s.split()[:3]) for s in masked)
    after = Counter(" ".join(s.split("_", 1)[1].split()[:2]) for s in masked)
    assert len(openings) > 500 and openings.most_common(1)[0][1] < 0.05 * len(xs)
    assert len(after) > 300 and after.most_common(1)[0][1] < 0.1 * len(xs)


def test_pronoun_number_words_agreement_and_cues(texts):
    xs = texts["pronoun_number"]
    words = Counter(m.lower() for s in xs for m in re.findall(r"\b(?:he|she|it|they)\b", s, re.I))
    assert min(words["he"], words["she"], words["it"]) > 800 and words["they"] >= 3000
    bad = [s for s in xs if re.search(r"\b(he|she|it) (were|are|have|do|want|need)\b", s, re.I)
           or re.search(r"\bthey (was|is|has|does|wants|needs)\b", s, re.I)]
    assert not bad, bad[:3]
    # Number is marked right after the pronoun (be/have/do or -s verb) in a good share of sentences.
    marked = re.compile(r"\b(?:he|she|it|they) (?:(?:usually|often|always|rarely|sometimes|never) )?"
                        r"(?:is|are|was|were|has|have|does|do|\w+s)\b", re.I)
    assert sum(bool(marked.search(s)) for s in xs) > 0.35 * len(xs)
    # "it" refers to things: an "it" sentence names one of the built-in things.
    things = [t for sg, pl, _ in builtin.THINGS for t in (sg, pl)]
    it_sents = [s for s in xs if re.search(r"\bit\b", s, re.I)]
    assert all(any(t in s.lower() for t in things) for s in it_sents)
    # Plural antecedents (people and things) precede many "they".
    plural = [s for s in xs if re.search(r"\bthey\b", s, re.I)
              and any(p in s.lower() for p in builtin.PERSONS_PL + [pl for _, pl, _ in builtin.THINGS])]
    assert len(plural) > 1500


def test_gender_sentences_have_matching_antecedents(texts):
    classes = BUILTIN_DATASETS["gender"]["classes"]
    masc = [w.lower() for w in builtin.PERSONS_M + builtin.NAMES_M]
    fem = [w.lower() for w in builtin.PERSONS_F + builtin.NAMES_F]
    slots = Counter()
    for s in texts["gender"]:
        (cls,) = class_of(s, classes)
        low = s.lower()
        own, other = (masc, fem) if cls == "masculine" else (fem, masc)
        assert any(re.search(rf"\b{re.escape(a)}\b", low) for a in own), s
        slots[re.search(r"\b(he|him|his|she|her|hers)\b", low).group(1)] += 1
    assert all(slots[w] > 200 for w in ("he", "him", "his", "she", "her", "hers")), slots


def test_neutral_has_no_pronouns(texts):
    xs = texts["neutral"]
    assert len(xs) >= 1000 and len(set(xs)) == len(xs)
    pat = word_pattern(PRONOUNS)
    assert not [s for s in xs if pat.search(s)]
    assert all(6 <= len(s.split()) <= 30 for s in xs)
    assert texts["neutral_s"] < 1.0


def test_deterministic_per_seed():
    assert pronoun_number_texts(seed=1) == pronoun_number_texts(seed=1)
    assert pronoun_number_texts(seed=1) != pronoun_number_texts(seed=2)
    assert gender_texts(seed=3)[:50] != gender_texts(seed=4)[:50]
    assert neutral_texts(seed=5) == neutral_texts(seed=5)


def test_vocabulary_covers_other_seeds_and_tiny_tokenizer():
    vocab = builtin_vocabulary()
    assert vocab == sorted(set(vocab)) and all(w == w.lower() for w in vocab)
    vs = set(vocab)
    for fn in (pronoun_number_texts, gender_texts, neutral_texts, person_number_texts):
        for s in fn(seed=11):
            assert set(re.findall(r"[a-z0-9]+", s.lower())) <= vs, s
    # Whole-word vocabularies (gradiend_core.testing.tiny_mlm(words=vocab)) need every pre-token of a
    # lowercased sentence in the vocabulary, else it becomes [UNK]; punctuation is in the tiny base words.
    from tokenizers.pre_tokenizers import BertPreTokenizer

    pre = BertPreTokenizer()
    allowed = vs | set(".,!?'-")
    sample = (pronoun_number_texts(seed=11)[::50] + gender_texts(seed=11)[::50] + neutral_texts(seed=11)[::20]
              + person_number_texts(seed=11)[::50])
    for s in sample:
        assert {piece for piece, _ in pre.pre_tokenize_str(s.lower())} <= allowed, s


@pytest.mark.parametrize("name,mode", [("pronoun_number", "random"), ("gender", "vocabulary")])
def test_builtins_feed_creation(name, mode):
    spec = BUILTIN_DATASETS[name]
    df = create_training_data(builtin_texts(name), uncapped(classes=spec["classes"], split_mode=mode,
                                                             max_per_class=400))
    assert df.factual_class.value_counts().to_dict() == {c: 400 for c in spec["classes"]}
    assert (df.n_masks == 1).all()  # one slot per sentence


# ------------------------------------------------------------------------------------------ person_number
PERSON_CLASSES = {"1SG": ["i"], "1PL": ["we"], "2": ["you"], "3SG": ["he", "she", "it"], "3PL": ["they"]}
NON_SUBJECT = ("me my mine myself us our ours ourselves your yours yourself yourselves him his himself her hers "
               "herself its itself them their theirs themselves").split()
FREQ = r"(?:(?:usually|often|always|rarely|sometimes|never)\s+)?"


def test_person_number_registered_with_its_classes():
    spec = BUILTIN_DATASETS["person_number"]
    assert spec["classes"] == PERSON_CLASSES and list(spec["classes"]) == ["1SG", "1PL", "2", "3SG", "3PL"]
    assert spec["texts"] is person_number_texts and spec["description"]


def test_person_number_counts_one_subject_pronoun_no_duplicates(texts):
    xs = texts["person_number"]
    assert len(xs) == len(set(xs))
    per_sentence = [class_of(s, PERSON_CLASSES) for s in xs]
    assert all(len(c) == 1 for c in per_sentence), [s for s, c in zip(xs, per_sentence) if len(c) != 1][:3]
    counts = Counter(c[0] for c in per_sentence)
    assert all(len({s for s, c in zip(xs, per_sentence) if c == [k]}) >= 1500 for k in PERSON_CLASSES), counts
    assert not [s for s in xs if word_pattern(NON_SUBJECT).search(s)]  # subject forms only
    words = Counter(m.lower() for s in xs for m in re.findall(r"\b(?:he|she|it)\b", s, re.I))
    assert min(words.values()) > 300, words
    lengths = [len(s.split()) for s in xs]
    assert 6 <= min(lengths) and max(lengths) <= 30 and len(set(lengths)) >= 12
    assert texts["person_number_s"] < 2.0  # 10,000 sentences


def _after_pronoun(xs, pronoun):
    """(word before, word after) the subject pronoun, frequency adverbs skipped."""
    pat = re.compile(rf"(?:(\w+)\s+)?\b{pronoun}\s+{FREQ}(\w+)", re.I)
    return [(m.group(1) or "", m.group(2).lower()) for s in xs if (m := pat.search(s))]


def test_person_number_agreement(texts):
    xs = texts["person_number"]
    s3 = {v[1] for v in builtin.VERBS.values() if v[1] != v[0]}  # walks, takes, ... (3sg present only)
    bare = {v[0] for v in builtin.VERBS.values() if v[0] not in (v[1], v[2])}  # walk, take (not read, cost)
    inverted = {"does", "did", "will", "should", "could", "can", "must", "has", "why", "was", "is"}
    after = {p: _after_pronoun(xs, p) for p in ("i", "we", "you", "he", "she", "it", "they")}
    assert not [w for _, w in after["i"] if w in s3 | {"is", "are", "were", "has", "does"}]
    for p in ("we", "you", "they"):
        assert not [w for _, w in after[p] if w in s3 | {"is", "am", "was", "has", "does"}], p
    for p in ("he", "she", "it"):
        assert not [(b, w) for b, w in after[p] if w in {"are", "am", "were", "have", "do"}
                    or (w in bare and b.lower() not in inverted)], p
    # Each person's own forms occur often: I am / I was, we were, you are, he is, they have ...
    seen = Counter((p, w) for p, ws in after.items() for _, w in ws)
    for pair in [("i", "am"), ("i", "was"), ("i", "have"), ("we", "were"), ("you", "are"), ("you", "were"),
                 ("he", "is"), ("she", "was"), ("it", "was"), ("they", "are"), ("they", "have"), ("he", "has")]:
        assert seen[pair] >= 20, (pair, seen[pair])
    # Questions invert with the right auxiliary: Am I / Do I, Do we / Were they, Does he / Is it.
    wrong_aux = {"i": {"is", "are", "were", "has", "does"}, "we": {"am", "is", "was", "has", "does"},
                 "he": {"am", "are", "were", "have", "do"}}
    for p in ("i", "we", "you", "they", "he", "she", "it"):
        bad = wrong_aux[p if p in wrong_aux else "we" if p in ("you", "they") else "he"]
        assert not [b for b, _ in after[p] if b.lower() in bad], p


def test_person_number_it_refers_to_things(texts):
    things = [t for sg, pl, _ in builtin.THINGS for t in (sg, pl)]
    it_sents = [s for s in texts["person_number"] if re.search(r"\bit\b", s, re.I)]
    assert len(it_sents) > 300 and all(any(t in s.lower() for t in things) for s in it_sents)


def test_person_number_neutral_texts_hold_no_target(texts):
    assert BUILTIN_DATASETS["person_number"]["neutral_texts"] is neutral_texts
    pat = word_pattern([w for ws in PERSON_CLASSES.values() for w in ws] + NON_SUBJECT)
    assert not [s for s in texts["neutral"] if pat.search(s)]


def test_person_number_deterministic_per_seed(texts):
    assert person_number_texts() == texts["person_number"]
    assert person_number_texts(seed=1) == person_number_texts(seed=1)
    assert person_number_texts(seed=1)[:50] != person_number_texts(seed=2)[:50]


def test_person_number_feeds_creation():
    df = create_training_data(builtin_texts("person_number"), uncapped(classes=PERSON_CLASSES, max_per_class=300))
    assert df.groupby("factual_class").text.nunique().to_dict() == {c: 300 for c in PERSON_CLASSES}
    assert (df.groupby("text").alternative_class.nunique() == 4).all()  # one row per other class
    assert (df.n_masks == 1).all()


def test_unknown_builtin():
    with pytest.raises(ConfigError, match="unknown built-in data set 'nope'; choose one of pronoun_number, gender"):
        builtin_texts("nope")
