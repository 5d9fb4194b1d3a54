"""Built-in generators: counts, uniqueness, one slot per sentence, agreement, speed, vocabulary coverage."""
import re
import time
from collections import Counter

import pytest

from gradiend_core.data import builtin
from gradiend_core.data.builtin import (BUILTIN_DATASETS, builtin_texts, builtin_vocabulary, gender_texts,
                                        neutral_texts, pronoun_number_texts)
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
    for name, fn in (("pronoun_number", pronoun_number_texts), ("gender", gender_texts), ("neutral", neutral_texts)):
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


@pytest.mark.parametrize("name", ["pronoun_number", "gender"])
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
    for fn in (pronoun_number_texts, gender_texts, neutral_texts):
        for s in fn(seed=11):
            assert set(re.findall(r"[a-z0-9]+", s.lower())) <= vs, s
    # Whole-word vocabularies (gradiend_core.testing.tiny_mlm(words=vocab)) need every pre-token of a
    # lowercased sentence in the vocabulary, else it becomes [UNK]; punctuation is in the tiny base words.
    from tokenizers.pre_tokenizers import BertPreTokenizer

    pre = BertPreTokenizer()
    allowed = vs | set(".,!?'-")
    sample = pronoun_number_texts(seed=11)[::50] + gender_texts(seed=11)[::50] + neutral_texts(seed=11)[::20]
    for s in sample:
        assert {piece for piece, _ in pre.pre_tokenize_str(s.lower())} <= allowed, s


@pytest.mark.parametrize("name,mode", [("pronoun_number", "random"), ("gender", "vocabulary")])
def test_builtins_feed_creation(name, mode):
    spec = BUILTIN_DATASETS[name]
    df = create_training_data(builtin_texts(name), uncapped(classes=spec["classes"], split_mode=mode,
                                                             max_per_class=400))
    assert df.factual_class.value_counts().to_dict() == {c: 400 for c in spec["classes"]}
    assert (df.n_masks == 1).all()  # one slot per sentence


def test_unknown_builtin():
    with pytest.raises(ConfigError, match="unknown built-in data set 'nope'; choose one of pronoun_number, gender"):
        builtin_texts("nope")
