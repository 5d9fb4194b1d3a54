"""Suites: many pairwise GRADIENDs of one experiment, trained side by side and compared (D §7).

An experiment with a `suite:` section names its pairs (`all`: every unordered pair of the data classes in
their order; `one_vs_rest`: each class against the others merged into `non_<class>`; or an explicit list),
per-pair overrides and the comparison settings. Every other section applies to every pair. `pair_configs`
turns it into one single-pair ExperimentConfig per pair: the same file without `suite:` and with
`train.pair: [A, B]` (plus the pair's data.merge and overrides), so a pair's plan is a single run's plan
and both reuse each other's outputs. The suite plan (stages/plan.py) is the union of those plans.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from itertools import combinations

from .compare.measures import MEASURES, OVERLAP_VALUES
from .compare.results import CompareConfig
from .config_checks import fraction_or_count
from .config_loader import from_dict, suggest, to_dict
from .errors import ConfigError
from .model import PARTS

PAIR_MODES = ("all", "one_vs_rest")
GROUP_BY = ("layer", "component", "param")
REST_PREFIX = "non_"           # one_vs_rest: the merged rest of class A is "non_A"
PAIR_SEP = "-"                 # a pair's id: "<A>-<B>"
SUITE_WIDE = ("suite", "runner", "name")  # sections a pair cannot override (one flow runs every pair)


@dataclass
class CompareSection:
    """compare: the settings of gradiend_core.compare.CompareConfig (same keys), as YAML lists."""
    measures: list[str] = field(default_factory=lambda: list(MEASURES))
    topk: int | float = 1000
    similarity_topk: int | float | None = None
    value: str = "intersection_frac"
    group_by: list[str] = field(default_factory=lambda: ["layer", "component"])
    topk_parts: list[str] = field(default_factory=lambda: list(PARTS))

    def validate(self) -> None:
        for key, values, allowed in (("measures", self.measures, MEASURES), ("group_by", self.group_by, GROUP_BY),
                                     ("topk_parts", self.topk_parts, PARTS), ("value", [self.value], OVERLAP_VALUES)):
            for i, v in enumerate(values):
                if v not in allowed:
                    raise ConfigError(f"{key}: '{v}' is not one of {', '.join(allowed)}{suggest(v, allowed)}")
                if v in values[:i]:
                    raise ConfigError(f"{key} lists '{v}' twice; list each once")
        if not self.measures:
            raise ConfigError("measures is empty; list at least one, e.g. [cosine, topk_overlap]")
        fraction_or_count("suite.compare", "topk", self.topk)
        fraction_or_count("suite.compare", "similarity_topk", self.similarity_topk)

    def config(self) -> CompareConfig:
        return CompareConfig(measures=tuple(self.measures), topk=self.topk, similarity_topk=self.similarity_topk,
                             value=self.value, group_by=tuple(self.group_by), topk_parts=tuple(self.topk_parts))


@dataclass
class SuiteSection:
    """suite (optional): the pairs, per-pair overrides ({"A-B": {section: {key: value}}}), the comparison,
    and whether each pair also runs the decoder grid and its rewrites (off: the comparison needs neither)."""
    pairs: str | list[list[str]] = "all"
    overrides: dict[str, dict] | None = None
    compare: CompareSection = field(default_factory=CompareSection)
    rewrite: bool = False

    def validate(self) -> None:
        if isinstance(self.pairs, str) and self.pairs not in PAIR_MODES:
            raise ConfigError(f"pairs: '{self.pairs}' is not one of {', '.join(PAIR_MODES)}"
                              f"{suggest(self.pairs, PAIR_MODES)}; or list pairs like [[3SG, 3PL], [1SG, 1PL]]")
        for section in (self.overrides or {}).values():
            wide = [s for s in section if s in SUITE_WIDE] if isinstance(section, dict) else []
            if wide:
                raise ConfigError(f"overrides: '{wide[0]}' applies to the whole suite; set it outside suite.overrides")

    def pairs_of(self, classes: list[str]) -> list[tuple[str, str]]:
        """The suite's pairs (+1 class, -1 class) in order, checked against the data classes."""
        if self.pairs == "all":
            out = list(combinations(classes, 2))
        elif self.pairs == "one_vs_rest":
            out = [(c, REST_PREFIX + c) for c in classes]
        else:
            out = [_checked_pair(i, p, classes) for i, p in enumerate(self.pairs)]
        ids = [pair_id(p) for p in out]
        if len(set(map(frozenset, out))) != len(out):
            raise ConfigError(f"suite.pairs lists a pair twice ({', '.join(ids)}); list each pair once")
        if len(out) < 2:
            raise ConfigError(f"suite.pairs gives {len(out)} pair; a suite compares at least 2 (else use train.pair)")
        for pid in self.overrides or {}:
            if pid not in ids:
                raise ConfigError(f"suite.overrides: '{pid}' is not a pair of the suite{suggest(pid, ids)}; "
                                  f"use one of {', '.join(ids)}")
        return out


def _checked_pair(i: int, p: list[str], classes: list[str]) -> tuple[str, str]:
    if len(p) != 2 or p[0] == p[1]:
        raise ConfigError(f"suite.pairs[{i}]: {p} must name two different classes, e.g. [{', '.join(classes[:2])}]")
    for c in p:
        if c not in classes:
            raise ConfigError(f"suite.pairs[{i}]: '{c}' is not a data class{suggest(c, classes)}; "
                              f"use two of {', '.join(classes)}")
    return p[0], p[1]


def pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}{PAIR_SEP}{pair[1]}"


def suite_pairs(cfg) -> dict[str, tuple[str, str]]:
    """pair id -> (+1 class, -1 class) of a suite experiment, in suite order."""
    from .data.corpus import merged_classes

    pairs = cfg.suite.pairs_of(list(merged_classes(cfg.data)))
    return {pair_id(p): p for p in pairs}


def pair_configs(cfg) -> dict[str, object]:
    """pair id -> the single-pair experiment of each pair: the suite's file without `suite:`, with
    train.pair (and for one_vs_rest the merge of the rest), then the pair's overrides."""
    base = {k: v for k, v in to_dict(cfg).items() if k != "suite"}
    classes = list(cfg.data.resolved().classes) if cfg.suite.pairs == "one_vs_rest" else []
    out = {}
    for pid, (a, b) in suite_pairs(cfg).items():
        data = copy.deepcopy(base)
        data["train"]["pair"] = [a, b]
        if cfg.suite.pairs == "one_vs_rest":
            data["data"]["merge"] = {b: [c for c in classes if c != a]}
        overrides = (cfg.suite.overrides or {}).get(pid, {})
        for section, values in overrides.items():
            if isinstance(data.get(section), dict) and isinstance(values, dict):
                data[section] = _deep_merge(data[section], values)
            else:
                data[section] = values
        try:
            out[pid] = from_dict(type(cfg), data, "")
        except ConfigError as e:
            raise ConfigError(f"suite pair {pid}: {e}" + ("; fix suite.overrides" if overrides else "")) from None
    return out


def _deep_merge(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _deep_merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def pair_label(experiment: str, pid: str) -> str:
    """The experiment name a pair's steps publish their UI artifacts under (one key set per pair)."""
    return f"{experiment}-{pid}"
