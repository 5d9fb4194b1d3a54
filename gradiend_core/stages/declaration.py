"""One declaration per stage: its name, code version, config sections, upstream inputs, build function,
fan-out, split into parts and UI report. The plan (keys and wiring), the Prefect tasks, the UI
artifacts and the CLI's status all derive from these declarations (see registry.STAGES).

A stage module defines `build(out, conf, inputs, progress, paths) -> info` (writes the output into
the staging directory `out`, returns a small JSON-able info dict for the manifest) and ends with
`STAGE = Stage(...)`. Nothing else needs to know about it besides registry.STAGES.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

Build = Callable[..., dict]          # (out: Path, conf, inputs, progress, paths) -> info
Specs = list[dict]                   # UI artifact specs {kind, key, content, description}


@dataclass(frozen=True)
class Input:
    """An upstream output the stage reads; build() sees it as inputs[name].

    `stages`: the first of these that is in the plan (e.g. post-prune when enabled, else select-seed).
    `every`: the upstream is fanned out; every instance is an input, named f"{name}_{value}".
    """
    name: str
    stages: tuple[str, ...]
    every: bool = False


def needs(name: str, *stages: str, every: bool = False) -> Input:
    return Input(name, tuple(stages), every)


@dataclass(frozen=True)
class FanOut:
    """One plan step per value (e.g. one train-seed per seed, one rewrite per request); step ids are
    f"{stage}-{label(value)}" and the value enters the step's config slice as conf[param], so each step
    has its own key. `label`: how a value reads in step ids and fan-in input names (default str)."""
    param: str
    values: Callable[[Any], list]      # cfg -> values, in order (JSON-able: they are hashed into keys)
    label: Callable[[Any], str] = str  # value -> its part of the step id, unique among the values

    def step_id(self, stage: str, value) -> str:
        return f"{stage}-{self.label(value)}"


@dataclass(frozen=True)
class Split:
    """One output built as prepare -> one task per part -> finalize, on any runner and host. The
    output and its key are the one-task build's: the part count is a runner setting.

    prepare(store, conf, inputs, count, progress) -> plan (or {"cached": manifest});
    part(store, conf, inputs, plan, index, progress) -> small record;
    finalize(store, conf, inputs, plan, records) -> manifest.
    """
    prepare: Callable[..., dict]
    part: Callable[..., dict]
    finalize: Callable[..., dict]
    count: Callable[[Any], int]        # cfg -> number of part tasks (1: the one-task build)
    units: str                         # plan[units] lists the parts' work


@dataclass(frozen=True)
class Share:
    """Steps of this stage whose config slices differ only in what `signature` leaves out (and that read
    the same upstream outputs) are built together by one task when a plan has several of them (a suite's
    pairs): build(store, stage, confs, inputs, progress) -> small record. Each output is the one its own
    step would build, under its own key; the steps then find it in the store."""
    signature: Callable[[dict], dict]  # conf -> what must be equal to share one build
    build: Callable[..., dict]


@dataclass(frozen=True)
class Report:
    """How a stage is shown: plots drawn from its stored results, and UI artifacts.

    draw(manifest, out) -> info: a cheap step that reads the stage's output and writes plots into
    `out`; it is its own content-addressed output (`<stage>-report`), keyed by the stage's key and
    the source of the `code` modules, so a plot change re-draws without re-running the stage.
    artifacts(manifest, report_manifest | None, experiment) -> specs: the UI content (pure).
    `extra`: suffixes of the artifact keys besides the main one (for the run report's links).
    """
    artifacts: Callable[[dict, dict | None, str], Specs]
    draw: Callable[[dict, Path], dict] | None = None
    code: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    version: str = "1"

    def key_version(self) -> str:
        """The report's version in its key: `version` and a digest of the drawing code's source."""
        return f"{self.version}-{code_digest(self.code)}"


@dataclass(frozen=True)
class Stage:
    name: str
    version: str                       # bump when the output's meaning or bytes change
    sections: tuple[str, ...]          # ExperimentConfig sections the stage reads
    build: Build
    inputs: tuple[Input, ...] = ()
    conf: Callable[[Any], dict] | None = None    # the hashed config slice; default: the sections
    paths: Callable[[Any], dict] | None = None   # where input files live (not hashed: digests are)
    fanout: FanOut | None = None
    split: Split | None = None
    report: Report | None = None
    enabled: Callable[[Any], bool] | None = None  # an optional stage: in the plan only when true
    resumable: bool = False            # build() resumes a killed run's staging dir
    share: Share | None = None         # several steps built by one task (a suite's pairs)

    @property
    def report_stage(self) -> str:
        return f"{self.name}-report"

    def slice(self, cfg, value=None) -> dict:
        """The config slice hashed into this stage's key (with the fan-out value, if any)."""
        conf = self.conf(cfg) if self.conf else {s: section_dict(getattr(cfg, s)) for s in self.sections}
        if self.fanout is not None:
            conf = {**conf, self.fanout.param: value}
        return conf

    def in_plan(self, cfg) -> bool:
        return self.enabled is None or bool(self.enabled(cfg))


def section_dict(section) -> dict:
    return dataclasses.asdict(section)


def code_digest(modules: tuple[str, ...]) -> str:
    """sha256 (12 hex) over the source files of `modules` (found without importing them)."""
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            raise ConfigError(f"report code module '{name}' not found; fix the stage's Report(code=...)")
        h.update(name.encode() + b"\0" + Path(spec.origin).read_bytes())
    return h.hexdigest()[:12]
