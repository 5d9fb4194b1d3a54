"""Documents to segments: every text is cut at its line breaks, each line optionally into sentences (or
windows of N sentences), then filtered by length and de-duplicated.

A line is a paragraph: sentences are never joined across a line break, so neither are windows (the last
window of a paragraph may hold fewer than N sentences). The default (`PreprocessConfig()`) is one segment
per non-empty stripped line with exact duplicates dropped, which is what data creation always did.

Deviation from the reference: sentences are split by one regex (whitespace that follows `.`, `!` or `?`);
there is no spaCy sentencizer, and no `exclude_chars` / `custom_filter` option.
Deviation from the reference: exact duplicate segments are dropped by default (`dedup: true`).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gradiend_core.errors import ConfigError, DataError

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class PreprocessConfig:
    """How corpus texts become the sentences that are searched for target words (data.preprocess)."""
    sentences: bool | int = False   # false: one segment per line | true: one per sentence | N: windows of N
    min_chars: int | None = None    # drop segments shorter than this (characters)
    max_chars: int | None = None    # drop segments longer than this
    dedup: bool = True              # drop exact duplicate segments (the first is kept)

    def validate(self) -> "PreprocessConfig":
        s = self.sentences
        if not isinstance(s, (bool, int)) or (not isinstance(s, bool) and s < 1):
            raise ConfigError(f"sentences must be true, false or a window size >= 1, got {s!r}")
        for name in ("min_chars", "max_chars"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ConfigError(f"{name} must be an integer >= 0 or null, got {v!r}")
        if self.min_chars is not None and self.max_chars is not None and self.min_chars > self.max_chars:
            raise ConfigError(f"min_chars ({self.min_chars}) is above max_chars "
                              f"({self.max_chars}); no segment could pass: lower min_chars or raise max_chars")
        if not isinstance(self.dedup, bool):
            raise ConfigError(f"dedup must be true or false, got {self.dedup!r}")
        return self

    @property
    def window(self) -> int:
        """Sentences per segment; 0 = the whole line."""
        return 0 if self.sentences is False else 1 if self.sentences is True else int(self.sentences)

    def is_default(self) -> bool:
        return self == PreprocessConfig()


def split_into_sentences(line: str) -> list[str]:
    """Sentences of one line: cut at whitespace after `.`, `!` or `?`."""
    return [s for s in (p.strip() for p in SENTENCE_END.split(line)) if s]


def _line_segments(line: str, window: int) -> Iterator[str]:
    if window == 0:
        yield line
        return
    sentences = split_into_sentences(line)
    for i in range(0, len(sentences), window):
        yield " ".join(sentences[i:i + window])


def segments(texts: Iterable[str], cfg: PreprocessConfig | None = None) -> list[str]:
    """The segments of `texts` under `cfg` (default: one per non-empty stripped line, duplicates dropped)."""
    cfg = cfg or PreprocessConfig()
    lo, hi = cfg.min_chars, cfg.max_chars
    out: list[str] = []
    for text in texts:
        if not isinstance(text, str):
            raise DataError(f"texts must be strings, got {type(text).__name__}; load them with load_texts()")
        for line in text.split("\n"):
            line = line.strip()
            if not line:
                continue
            out += [s for s in _line_segments(line, cfg.window)
                    if (lo is None or len(s) >= lo) and (hi is None or len(s) <= hi)]
    return list(dict.fromkeys(out)) if cfg.dedup else out
