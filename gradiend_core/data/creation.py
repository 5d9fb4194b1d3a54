"""Create GRADIEND training data: match target words, mask them, pair with alternatives, split.

Pipeline (`create_training_data`): texts -> sentences (`documents.segments` under `preprocess`; by default one
per non-empty line, exact duplicates dropped)
-> per class, every whole-word, case-insensitive match of the class's target words (after the left-context
filter) is replaced by the literal "[MASK]" -> seeded shuffle, cap and balance per class -> per-class
splits (random rows or held-out vocabulary) -> one row per other class with an alternative word drawn,
with a seed, from that class's observed target-word distribution and re-cased like the factual word.
Neutral data (`create_neutral_data`) are sentences with none of the excluded words.
Files (`write_dataset`): training.parquet, neutral.parquet, summary.json (see `schema.py`).

Deviation from the reference: min_left_context_words defaults to 0, not 10 (10 silently drops short sentences).
Deviation from the reference: alternatives are drawn with a seeded generator (the reference is unseeded).
Deviation from the reference: neutral sentences are deduplicated, and `neutral_max` keeps a seeded sample.
Deviation from the reference: exact duplicate sentences are dropped before matching, so the same sentence can
never land in two splits.
Deviation from the reference: a class with no match, or too few rows for the requested splits, raises DataError
instead of being dropped with a warning / written to an "incomplete classes" sidecar.
Deviation from the reference: transitions are written "A->B" (ASCII), not with the Unicode arrow.
Deviation from the reference: vocabulary-held-out splitting happens here, at creation, with alternatives drawn
only from same-split words of the other class (the reference resplits later, in the trainer).
Deviation from the reference: balance is "none" | "cap" | "equal" (cut every class to the smallest); the
reference's per-label oversampling ("strict") is not implemented.
Deviation from the reference: word boundaries are `(?<!\\w)` / `(?!\\w)` lookarounds (same as `\\b` for targets
that start and end with a letter, also correct for targets such as "u.s."); multi-word targets match any run
of whitespace between their words.
"""
from __future__ import annotations

import io
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from gradiend_core.data import schema
from gradiend_core.data.merge import apply_merge, check_merge, merged_class_map
from gradiend_core.data.documents import PreprocessConfig, segments
from gradiend_core.errors import ConfigError, DataError
from gradiend_core.io import atomic_write_bytes, atomic_write_json, sha256_bytes

MASK = schema.MASK
SPLITS = schema.SPLITS
BALANCE_MODES = ("none", "cap", "equal")
SPLIT_MODES = ("random", "vocabulary")


# --------------------------------------------------------------------------------------------- config
@dataclass
class DataConfig:
    """Settings of data creation. `classes`: ordered class name -> target words.

    `classes` may also be a sequence of (name, words) pairs or of {"name": ..., "words": [...]} dicts,
    which is how duplicate class names (lost silently by a dict / YAML mapping) are detected.
    `max_per_class` caps sentences per factual class (before the N-1 alternative rows per sentence).
    """

    classes: Any
    min_left_context_words: int = 0
    max_per_class: int | None = 120  # sentences per factual class (reference: no cap)
    # none: keep all (or max_per_class) | cap: max_per_class required | equal: cut every class to the smallest
    balance: Literal["none", "cap", "equal"] = "equal"
    train_ratio: float = 0.8
    validation_ratio: float = 0.1
    test_ratio: float = 0.1
    # random rows per class | vocabulary: whole target words held out per split
    split_mode: Literal["random", "vocabulary"] = "random"
    seed: int = 42
    neutral_max: int | None = 60     # neutral sentences kept (reference: all)
    neutral_exclude: list[str] = field(default_factory=list)
    # how texts become sentences (default: one per line, duplicates dropped)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    merge: dict[str, list[str]] | None = None  # merged class -> raw classes (data/merge.py)
    identity_rows: bool = False  # also a row per sentence whose alternative is drawn from its own class

    def validate(self) -> "DataConfig":
        """Raise ConfigError on the first invalid field; return self."""
        self.merged_class_map()
        return self.validate_settings()

    def validate_settings(self) -> "DataConfig":
        """Every check but the classes' (a labelled table supplies their words later); return self."""
        _check_int("min_left_context_words", self.min_left_context_words, lo=0)
        if self.max_per_class is not None:
            _check_int("max_per_class", self.max_per_class, lo=1)
        if self.balance not in BALANCE_MODES:
            raise ConfigError(f"balance must be one of {', '.join(BALANCE_MODES)}, got {self.balance!r}")
        if self.balance == "cap" and self.max_per_class is None:
            raise ConfigError("balance='cap' needs max_per_class; set max_per_class or use balance='none'")
        if self.split_mode not in SPLIT_MODES:
            raise ConfigError(f"split_mode must be one of {', '.join(SPLIT_MODES)}, got {self.split_mode!r}")
        self._validate_ratios()
        _check_int("seed", self.seed)
        if self.neutral_max is not None:
            _check_int("neutral_max", self.neutral_max, lo=0)
        if isinstance(self.neutral_exclude, str) or not all(
                isinstance(w, str) and w.strip() for w in self.neutral_exclude):
            raise ConfigError("neutral_exclude must be a list of non-empty words, e.g. ['him', 'her']")
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ConfigError(f"preprocess must be a mapping of settings, got {self.preprocess!r}")
        self.preprocess.validate()
        return self

    def _validate_ratios(self) -> None:
        ratios = self.ratios()
        for name, r in ratios.items():
            if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0.0 <= r <= 1.0:
                raise ConfigError(f"{name} ratio must be a number in [0, 1], got {r!r}")
        total = sum(ratios.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"split ratios train/validation/test = {self.train_ratio}/{self.validation_ratio}/"
                              f"{self.test_ratio} sum to {total:g}, not 1; make them sum to 1")
        if ratios["train"] <= 0:
            raise ConfigError("train_ratio must be > 0: training needs a train split")

    def ratios(self) -> dict[str, float]:
        return {"train": self.train_ratio, "validation": self.validation_ratio, "test": self.test_ratio}

    def class_map(self) -> dict[str, list[str]]:
        """Validated, ordered class -> lowercased target words (whitespace collapsed, deduplicated)."""
        pairs = _class_pairs(self.classes)
        if len(pairs) < 2:
            raise ConfigError(f"need at least 2 classes to draw alternatives, got {len(pairs)}; "
                              f"add a second class of target words")
        out: dict[str, list[str]] = {}
        owner: dict[str, str] = {}
        for name, words in pairs:
            name = _check_class_name(name, out)
            out[name] = _normalise_words(name, words)
            for w in out[name]:
                if w in owner:
                    raise ConfigError(f"target word '{w}' is in classes '{owner[w]}' and '{name}'; "
                                      f"a word may belong to one class only")
                owner[w] = name
        return out

    def labels(self) -> dict[str, int]:
        """+1 for the first (merged) class, -1 for the second, 0 for the others."""
        names = list(self.merged_class_map())
        return {c: (1 if i == 0 else -1 if i == 1 else 0) for i, c in enumerate(names)}

    def merged_class_map(self) -> dict[str, list[str]]:
        """The classes after data.merge (merged name -> union of words); class_map() without a merge."""
        classes = self.class_map()
        check_merge(self.merge, classes)
        return merged_class_map(classes, self.merge)


def _check_int(name: str, value: Any, lo: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or (lo is not None and value < lo):
        bound = f" >= {lo}" if lo is not None else ""
        raise ConfigError(f"{name} must be an integer{bound}, got {value!r}")


def _class_pairs(classes: Any) -> list[tuple[Any, Any]]:
    if isinstance(classes, Mapping):
        return list(classes.items())
    if isinstance(classes, Sequence) and not isinstance(classes, str):
        pairs = []
        for item in classes:
            if isinstance(item, Mapping) and "name" in item:
                pairs.append((item["name"], item.get("words", item.get("targets"))))
            elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise ConfigError(f"cannot read class entry {item!r}; use {{'name': ..., 'words': [...]}} "
                                  f"or a (name, words) pair")
        return pairs
    raise ConfigError(f"classes must map class names to word lists, got {type(classes).__name__}")


def _check_class_name(name: Any, seen: Mapping[str, Any]) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"class names must be non-empty strings, got {name!r}")
    name = name.strip()
    if name in seen:
        raise ConfigError(f"duplicate class name '{name}'; give every class a unique name")
    if "->" in name:
        raise ConfigError(f"class name '{name}' contains '->', which separates transitions; rename it")
    return name


def _normalise_words(name: str, words: Any) -> list[str]:
    if isinstance(words, str) or not isinstance(words, Iterable):
        raise ConfigError(f"class '{name}' needs a list of target words, got {words!r}")
    out: list[str] = []
    for w in words:
        if not isinstance(w, str) or not w.strip():
            raise ConfigError(f"class '{name}' has an empty or non-string target word {w!r}; remove it")
        w = " ".join(w.lower().split())
        if MASK.lower() in w:
            raise ConfigError(f"class '{name}' target '{w}' contains the mask literal {MASK}; remove it")
        if w not in out:
            out.append(w)
    if not out:
        raise ConfigError(f"class '{name}' has no target words; list at least one")
    return out


# ------------------------------------------------------------------------------------ matching/masking
def word_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """Case-insensitive whole-word regex for `words` (longest first; multi-word = any whitespace between)."""
    alts = sorted({" ".join(w.lower().split()) for w in words}, key=lambda w: (-len(w), w))
    body = "|".join(r"\s+".join(re.escape(p) for p in w.split()) for w in alts)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


def find_spans(sentence: str, pattern: re.Pattern[str],
               min_left_context_words: int = 0) -> list[tuple[int, int, str]]:
    """(start, end, surface) of every match with at least `min_left_context_words` words before it."""
    spans = []
    for m in pattern.finditer(sentence):
        if min_left_context_words and len(re.findall(r"\w+", sentence[:m.start()])) < min_left_context_words:
            continue
        spans.append((m.start(), m.end(), m.group()))
    return spans


def mask_spans(sentence: str, spans: Sequence[tuple[int, int, str]], mask: str = MASK) -> str:
    """Replace every span (sorted, non-overlapping) by `mask`."""
    parts, last = [], 0
    for start, end, _ in spans:
        parts += [sentence[last:start], mask]
        last = end
    return "".join(parts) + sentence[last:]


def recase(word: str, like: str) -> str:
    """`word` in the casing pattern of `like`: UPPER (>1 letter, all upper), Title, or lower."""
    letters = [c for c in like if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return word.upper()
    if letters and letters[0].isupper():
        if " " in like and all(p[:1].isupper() for p in like.split()):
            return " ".join(p[:1].upper() + p[1:] for p in word.split())
        return word[:1].upper() + word[1:]
    return word.lower()


def split_sentences(texts: Iterable[str]) -> list[str]:
    """One sentence per non-empty stripped line of every text; exact duplicates dropped (first kept)."""
    return segments(texts)


@dataclass(frozen=True)
class _Match:
    """One sentence matched for one class."""

    text: str
    masked: str
    factual: str  # surface form of the first masked span
    n_masks: int

    @property
    def word(self) -> str:
        return " ".join(self.factual.lower().split())


def match_classes(sentences: Sequence[str], classes: Mapping[str, list[str]],
                  min_left_context_words: int = 0) -> dict[str, list[_Match]]:
    """Per class, the sentences holding >= 1 surviving target span, in corpus order."""
    anyword = word_pattern(w for ws in classes.values() for w in ws)  # cheap prefilter
    patterns = {c: word_pattern(ws) for c, ws in classes.items()}
    out: dict[str, list[_Match]] = {c: [] for c in classes}
    for s in sentences:
        if not anyword.search(s):
            continue
        for c, pat in patterns.items():
            spans = find_spans(s, pat, min_left_context_words)
            if spans:
                out[c].append(_Match(s, mask_spans(s, spans), spans[0][2], len(spans)))
    return out


def unmatched_words(sentences: Sequence[str], classes: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    """(class, word) of every target word that no sentence holds as a whole word: it adds no row."""
    found: set[str] = set()
    pattern = word_pattern(w for ws in classes.values() for w in ws)
    for s in sentences:
        found.update(" ".join(m.group().lower().split()) for m in pattern.finditer(s))
    return [(c, w) for c, ws in classes.items() for w in ws if w not in found]


# ------------------------------------------------------------------------------------------ selection
def _select(matches: dict[str, list[_Match]], cfg: DataConfig, rng: random.Random) -> dict[str, list[_Match]]:
    """Seeded shuffle per class, then cap (max_per_class) and balance."""
    out = {}
    for c, ms in matches.items():
        ms = list(ms)
        rng.shuffle(ms)
        out[c] = ms[:cfg.max_per_class] if cfg.max_per_class is not None else ms
    if cfg.balance == "equal":
        n = min(len(ms) for ms in out.values())
        out = {c: ms[:n] for c, ms in out.items()}
    return out


def split_counts(n: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Reference rounding: train=round(n*r_train), validation=round(n*r_val), test=rest.

    A zero-ratio split gets 0 (its rounding remainder goes to train).
    """
    n_train = round(n * ratios["train"])
    n_val = round(n * ratios["validation"]) if ratios["validation"] > 0 else 0
    n_test = n - n_train - n_val
    if ratios["test"] <= 0 or n_test < 0:
        n_train, n_test = n_train + n_test, 0
    if n_train < 0:  # only if validation alone exceeded n; cannot happen for ratios summing to 1
        n_val, n_train = n_val + n_train, 0
    return {"train": n_train, "validation": n_val, "test": n_test}


def _min_rows_for_splits(ratios: Mapping[str, float]) -> int:
    need = [s for s in SPLITS if ratios[s] > 0]
    return next(n for n in range(len(need), 100_000)
                if all(split_counts(n, ratios)[s] >= 1 for s in need))


def _random_splits(cls: str, ms: list[_Match], ratios: Mapping[str, float]) -> dict[str, list[_Match]]:
    counts = split_counts(len(ms), ratios)
    empty = [s for s in SPLITS if ratios[s] > 0 and counts[s] == 0]
    if empty:
        got = "/".join(str(counts[s]) for s in SPLITS)
        raise DataError(f"class '{cls}' has {len(ms)} row(s), too few for train/validation/test ratios "
                        f"{ratios['train']:g}/{ratios['validation']:g}/{ratios['test']:g} (would get {got}; "
                        f"{', '.join(empty)} empty); needs at least {_min_rows_for_splits(ratios)}: "
                        f"add texts or set the empty split's ratio to 0")
    a, b = counts["train"], counts["train"] + counts["validation"]
    return {"train": ms[:a], "validation": ms[a:b], "test": ms[b:]}


def _vocab_counts(k: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Words per split: reference rounding, then every non-zero-ratio split takes >= 1 from the largest."""
    counts = split_counts(k, ratios)
    for s in SPLITS:
        if ratios[s] > 0 and counts[s] == 0:
            donor = max(SPLITS, key=lambda d: counts[d])
            counts[donor] -= 1
            counts[s] += 1
    return counts


def _vocabulary_splits(cls: str, ms: list[_Match], ratios: Mapping[str, float],
                       rng: random.Random) -> dict[str, list[_Match]]:
    words = sorted({m.word for m in ms})
    need = sum(1 for s in SPLITS if ratios[s] > 0)
    if len(words) < need:
        raise DataError(f"class '{cls}' has {len(words)} distinct matched word(s) ({', '.join(words)}) but "
                        f"split_mode='vocabulary' needs at least {need} (one per non-empty split); "
                        f"add target words, or use split_mode='random'")
    rng.shuffle(words)
    counts = _vocab_counts(len(words), ratios)
    word_split, i = {}, 0
    for s in SPLITS:
        for w in words[i:i + counts[s]]:
            word_split[w] = s
        i += counts[s]
    return {s: [m for m in ms if word_split[m.word] == s] for s in SPLITS}


# ------------------------------------------------------------------------------------- training rows
def create_training_data(texts: Iterable[str], cfg: DataConfig) -> pd.DataFrame:
    """The training table (columns/dtypes of `schema.TRAINING_SCHEMA`) for `texts` under `cfg`."""
    cfg.validate()
    classes = cfg.class_map()
    sentences = segments(texts, cfg.preprocess)
    if not sentences:
        what = "no non-blank line" if cfg.preprocess.is_default() else "no sentence passes data.preprocess"
        raise DataError(f"the corpus is empty ({what}); give texts with at least one sentence")
    matches = match_classes(sentences, classes, cfg.min_left_context_words)
    for c, ms in matches.items():
        if not ms:
            ctx = (f" with >= {cfg.min_left_context_words} words of left context"
                   if cfg.min_left_context_words else "")
            raise DataError(f"class '{c}' matched no sentence{ctx}; searched words: {', '.join(classes[c])} "
                            f"(in {len(sentences)} sentences); check the words or the corpus")
    rng = random.Random(cfg.seed)
    selected = _select(matches, cfg, rng)
    ratios = cfg.ratios()
    splits = {c: (_vocabulary_splits(c, ms, ratios, rng) if cfg.split_mode == "vocabulary"
                  else _random_splits(c, ms, ratios)) for c, ms in selected.items()}
    df = _rows(splits, {c: 0 for c in classes}, per_split_alternatives=cfg.split_mode == "vocabulary",
               rng=random.Random(f"alternatives:{cfg.seed}"), identity=cfg.identity_rows)
    return apply_merge(df, cfg.merge, cfg.labels()) if cfg.merge else df.assign(
        label=df["factual_class"].map(cfg.labels()).astype(df["label"].dtype))


def _distribution(ms: Iterable[_Match]) -> tuple[list[str], list[int]]:
    counts = Counter(m.word for m in ms)
    words = sorted(counts)
    return words, [counts[w] for w in words]


def alternative_distributions(splits: Mapping[str, Mapping[str, list]], per_split: bool):
    """(class, split) -> (words, weights) of that class's factual words to draw alternatives from: the
    split's own words with `per_split`, else the class's words over all splits."""
    if per_split:
        dists = {(c, s): _distribution(ms) for c, by in splits.items() for s, ms in by.items()}
        return lambda c, s: dists[(c, s)]
    dists = {c: _distribution(m for ms in by.values() for m in ms) for c, by in splits.items()}
    return lambda c, s: dists[c]


def training_frame(rows: list[tuple]) -> pd.DataFrame:
    """The training table from tuples in schema order (without row_id): row_id added, integer dtypes set."""
    df = pd.DataFrame(rows, columns=schema.TRAINING_COLUMNS[1:])
    df.insert(0, "row_id", range(len(df)))
    return df.astype(schema.INT_DTYPES)


def _rows(splits: dict[str, dict[str, list[_Match]]], labels: Mapping[str, int],
          per_split_alternatives: bool, rng: random.Random, identity: bool = False) -> pd.DataFrame:
    """One row per (matched sentence, other class), and with `identity` one more whose alternative is drawn
    from the sentence's own class; alternatives drawn in this fixed row order."""
    dist = alternative_distributions(splits, per_split_alternatives)
    rows = []
    for a, by_split in splits.items():
        for s in SPLITS:
            for m in by_split[s]:
                for b in splits:
                    if b == a and not identity:
                        continue
                    words, weights = dist(b, s)
                    alt = rng.choices(words, weights=weights)[0]
                    rows.append((m.text, m.masked, m.factual, recase(alt, m.factual), a, b, f"{a}->{b}",
                                 labels[a], s, m.word, m.n_masks))
    return training_frame(rows)


# --------------------------------------------------------------------------------------------- neutral
def create_neutral_data(texts: Iterable[str], exclude_words: Iterable[str], max_rows: int | None = None,
                        seed: int = 42, preprocess: PreprocessConfig | None = None) -> pd.DataFrame:
    """Sentences (`documents.segments` under `preprocess`) holding none of `exclude_words` (whole-word,
    case-insensitive).

    With `max_rows`, a seeded random sample of that size, kept in corpus order. Columns: row_id, text.
    """
    if max_rows is not None:
        _check_int("max_rows", max_rows, lo=0)
    words = [w for w in exclude_words if isinstance(w, str) and w.strip()]
    pattern = word_pattern(words) if words else None
    keep = [s for s in segments(texts, preprocess) if pattern is None or not pattern.search(s)]
    if max_rows is not None and len(keep) > max_rows:
        idx = sorted(random.Random(seed).sample(range(len(keep)), max_rows))
        keep = [keep[i] for i in idx]
    df = pd.DataFrame({"row_id": range(len(keep)), "text": keep}, columns=schema.NEUTRAL_COLUMNS)
    return df.astype({"row_id": "int64"})


def neutral_exclude_words(cfg: DataConfig) -> list[str]:
    """Every class target word plus cfg.neutral_exclude (lowercased, deduplicated, ordered)."""
    words = [w for ws in cfg.class_map().values() for w in ws]
    words += [" ".join(w.lower().split()) for w in cfg.neutral_exclude]
    return list(dict.fromkeys(words))


def create_dataset(texts: Iterable[str], cfg: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training_df, neutral_df) for one corpus: neutral excludes all class words + cfg.neutral_exclude."""
    texts = list(texts)
    training = create_training_data(texts, cfg)
    neutral = create_neutral_data(texts, neutral_exclude_words(cfg), cfg.neutral_max, cfg.seed, cfg.preprocess)
    return training, neutral


# ------------------------------------------------------------------------------------------- output
def summarize(training_df: pd.DataFrame, neutral_df: pd.DataFrame | None = None) -> dict[str, Any]:
    """Row counts per class, split, class x split, target word (per class), transition; neutral count."""
    schema.check_columns(training_df, "training")
    t = training_df

    def counts(col: str, frame: pd.DataFrame = t) -> dict[str, int]:
        return {str(k): int(v) for k, v in sorted(frame[col].value_counts().items())}

    return {
        "schema_version": schema.SCHEMA_VERSION,
        "n_rows": int(len(t)),
        "n_sentences": int(t["text"].nunique()),
        "classes": {c: int(n) for c, n in t["factual_class"].value_counts(sort=False).items()},
        "splits": {s: int((t["split"] == s).sum()) for s in SPLITS},
        "class_splits": {c: {s: int((g["split"] == s).sum()) for s in SPLITS}
                         for c, g in t.groupby("factual_class", sort=False)},
        "target_words": {c: counts("target_word", g) for c, g in t.groupby("factual_class", sort=False)},
        "transitions": counts("transition"),
        "labels": {str(k): int(v) for k, v in sorted(t["label"].value_counts().items())},
        "neutral": int(len(neutral_df)) if neutral_df is not None else 0,
    }


def parquet_bytes(df: pd.DataFrame, kind: str = "training") -> bytes:
    """Deterministic parquet bytes in the fixed schema (no pandas index/metadata, no timestamps)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(schema.to_arrow(df, kind), buf, compression="zstd")
    return buf.getvalue()


def write_dataset(out_dir: str | Path, training_df: pd.DataFrame,
                  neutral_df: pd.DataFrame | None = None) -> dict[str, Any]:
    """Write training.parquet, neutral.parquet, summary.json (each atomically; summary last). Returns summary."""
    out = Path(out_dir)
    if neutral_df is None:
        neutral_df = pd.DataFrame({"row_id": pd.Series([], dtype="int64"), "text": pd.Series([], dtype=str)})
    files = {"training.parquet": parquet_bytes(training_df, "training"),
             "neutral.parquet": parquet_bytes(neutral_df, "neutral")}
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    summary = summarize(training_df, neutral_df)
    summary["files"] = {name: sha256_bytes(data) for name, data in files.items()}
    atomic_write_json(out / "summary.json", summary)
    return summary


def read_dataset(out_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training_df, neutral_df) from a directory written by `write_dataset`."""
    import pyarrow.parquet as pq

    out = Path(out_dir)
    frames = []
    for kind in ("training", "neutral"):
        path = out / f"{kind}.parquet"
        if not path.is_file():
            raise DataError(f"{path} not found; create the data set first (write_dataset)")
        frames.append(schema.from_arrow(pq.read_table(path), kind))
    return frames[0], frames[1]

