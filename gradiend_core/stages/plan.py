"""The pipeline DAG of one experiment, derived from the stage declarations (registry.STAGES).

Every step's config slice, inputs and content address are computed up front: keys depend only on
config slices and upstream keys, so the whole plan (and which outputs are already in the store) is
known before anything runs, and bad config fails here, before any stage.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..store import stage_key
from ..suite import pair_configs
from .declaration import Input, Stage
from .registry import STAGES, stage
from .runner import hashed, run_report, run_stage


@dataclass
class StagePlan:
    id: str                    # unique in the plan, e.g. "train-seed-1", "rewrite-3SG-strengthen"
    decl: Stage
    conf: dict
    paths: dict                # where input files live (not hashed: their digests are in conf)
    inputs: dict[str, str] = field(default_factory=dict)   # input name -> plan id
    key: str = ""
    report_key: str | None = None  # the key of its report output, when the stage draws one
    pair: str | None = None    # a suite: the pair whose step this is (None: a single run's, or shared)
    share: str | None = None   # steps with the same id here are built by one task (Stage.share)

    @property
    def stage(self) -> str:
        return self.decl.name


def plan(cfg) -> dict[str, StagePlan]:
    """Ordered plan (dependencies first) for an ExperimentConfig (a suite: suite_plan)."""
    if getattr(cfg, "suite", None) is not None:
        return suite_plan(cfg)
    return pair_plan(cfg)


def pair_plan(cfg) -> dict[str, StagePlan]:
    """The plan of one GRADIEND (a single-pair experiment)."""
    steps: dict[str, StagePlan] = {}
    instances: dict[str, list[StagePlan]] = {}  # stage name -> its steps (several when fanned out)
    for decl in STAGES:
        if not decl.in_plan(cfg):
            continue
        inputs = _wire(decl, instances)
        paths = decl.paths(cfg) if decl.paths else {}
        values = decl.fanout.values(cfg) if decl.fanout else [None]
        for v in values:
            sid = decl.name if decl.fanout is None else decl.fanout.step_id(decl.name, v)
            p = StagePlan(sid, decl, decl.slice(cfg, v), paths, inputs)
            p.key = stage_key(decl.name, decl.version, hashed(p.conf), {n: steps[i].key for n, i in inputs.items()})
            p.report_key = report_key(decl, p.key)
            steps[sid] = p
            instances.setdefault(decl.name, []).append(p)
    return steps


def _wire(decl: Stage, instances: dict[str, list[StagePlan]]) -> dict[str, str]:
    """input name -> plan id of every input of `decl` (a fan-in input: one entry per upstream step)."""
    out: dict[str, str] = {}
    for inp in decl.inputs:
        found = _upstream(inp, instances)
        if inp.every:
            out.update({f"{inp.name}_{s.decl.fanout.label(s.conf[s.decl.fanout.param])}": s.id for s in found})
        else:
            out[inp.name] = found[0].id
    return out


SUITE_STAGE = "compare"
REWRITE_STAGES = ("decoder-grid", "rewrite")  # a suite runs them only with suite.rewrite


def suite_plan(cfg) -> dict[str, StagePlan]:
    """The union of every pair's plan (its keys are the single-pair run's), then the comparison.

    One step per (stage, key): a step every pair shares (same id, same key: prepare-model, create-data)
    keeps its plain id; any other is namespaced by the first pair that has it ("3SG-3PL/train-seed-0")."""
    per = {pid: pair_plan(c) for pid, c in pair_configs(cfg).items()}
    if not cfg.suite.rewrite:
        per = {pid: {s: p for s, p in ps.items() if p.stage not in REWRITE_STAGES} for pid, ps in per.items()}
    shared = {sid for sid, p in next(iter(per.values())).items()
              if all(sid in ps and ps[sid].key == p.key for ps in per.values())}
    steps: dict[str, StagePlan] = {}
    ids: dict[tuple[str, str], str] = {}  # (stage, key) -> suite id
    for pid, ps in per.items():
        for sid, p in ps.items():
            if (p.stage, p.key) in ids:
                continue
            new = sid if sid in shared else f"{pid}/{sid}"
            inputs = {n: ids[(ps[i].stage, ps[i].key)] for n, i in p.inputs.items()}
            steps[new] = dataclasses.replace(p, id=new, inputs=inputs, pair=None if sid in shared else pid)
            ids[(p.stage, p.key)] = new
    c = _fan_in_step(stage(SUITE_STAGE), cfg, per, ids, steps)
    steps[c.id] = c
    _mark_shared(steps)
    return steps


def _mark_shared(steps: dict[str, StagePlan]) -> None:
    """Set `share` on the steps of a stage declared with a Share that can be built together: same
    signature of their config slices and same upstream steps (only groups of two or more)."""
    groups: dict[str, list[StagePlan]] = {}
    for p in steps.values():
        if p.decl.share is not None:
            sig = stage_key(p.stage, p.decl.version, hashed(p.decl.share.signature(p.conf)),
                            {n: steps[i].key for n, i in p.inputs.items()})
            groups.setdefault(sig, []).append(p)
    shared = [m for m in groups.values() if len(m) > 1]
    for n, members in enumerate(shared):
        for p in members:  # e.g. "extract-gradients-shared" (then "-shared-2", ... for more groups)
            p.share = f"{p.stage}-shared" + (f"-{n + 1}" if n else "")


def shared_groups(steps: dict[str, StagePlan]) -> dict[str, list[StagePlan]]:
    """share id -> the steps one task builds together, in plan order."""
    out: dict[str, list[StagePlan]] = {}
    for p in steps.values():
        if p.share is not None:
            out.setdefault(p.share, []).append(p)
    return out


def run_shared(store, members: list[StagePlan], inputs: dict[str, dict], progress=None) -> dict:
    """Build the outputs of a share group that are not in the store yet, in one task (Stage.share)."""
    d = members[0].decl
    return d.share.build(store, d, [p.conf for p in members], inputs, progress)


def _fan_in_step(decl: Stage, cfg, per: dict, ids: dict, steps: dict) -> StagePlan:
    """The suite stage: each input is taken from every pair's plan, named f"{input}_{pair id}"."""
    inputs = {}
    for pid, ps in per.items():
        for inp in decl.inputs:
            found = next((p for n in inp.stages for p in ps.values() if p.stage == n), None)
            if found is None:
                raise ValueError(f"suite stage input '{inp.name}' needs one of {inp.stages} in pair {pid}'s plan")
            inputs[f"{inp.name}_{pid}"] = ids[(found.stage, found.key)]
    p = StagePlan(decl.name, decl, decl.slice(cfg), decl.paths(cfg) if decl.paths else {}, inputs)
    p.key = stage_key(decl.name, decl.version, hashed(p.conf), {n: steps[i].key for n, i in inputs.items()})
    p.report_key = report_key(decl, p.key)
    return p


def _upstream(inp: Input, instances: dict[str, list[StagePlan]]) -> list[StagePlan]:
    for name in inp.stages:
        if name in instances:
            return instances[name]
    raise ValueError(f"stage input '{inp.name}' needs one of {inp.stages}, none of which is declared earlier "
                     f"in registry.STAGES; fix the declaration order")


def report_key(decl: Stage, key: str) -> str | None:
    """Key of a stage output's report: the output's key and the report's code version."""
    r = decl.report
    if r is None or r.draw is None:
        return None
    return stage_key(decl.report_stage, r.key_version(), {}, {"output": key})


def upstream_ids(steps: dict[str, StagePlan], target: str) -> list[str]:
    """Plan ids `target` depends on (itself included), in plan order."""
    need, stack = set(), [target]
    while stack:
        sid = stack.pop()
        if sid not in need:
            need.add(sid)
            stack += list(steps[sid].inputs.values())
    return [sid for sid in steps if sid in need]


def run_plan(store, steps: dict[str, StagePlan], until: str | None = None, reports: bool = False,
             progress=None) -> dict[str, dict]:
    """Run the plan (or the steps `until` needs) in this process, one step after the other, without
    Prefect; returns plan id -> manifest. For tests, benchmarks and debugging: the flow runs the same
    steps as Prefect tasks."""
    ids = upstream_ids(steps, until) if until else list(steps)
    done: dict[str, dict] = {}
    groups, built = shared_groups(steps), set()
    for sid in ids:
        p = steps[sid]
        if p.share is not None and p.share not in built:
            run_shared(store, groups[p.share], {n: done[i] for n, i in p.inputs.items()}, progress)
            built.add(p.share)
        done[sid] = run_step(store, p, {n: done[i] for n, i in p.inputs.items()}, progress)
        if reports:
            run_report(store, p.decl, done[sid])
    return done


def run_step(store, p: StagePlan, inputs: dict[str, dict], progress=None) -> dict:
    """One plan step against the store (reused when valid, else built and published)."""
    d = p.decl
    return run_stage(store, d.name, d.version, p.conf, inputs, d.build, progress, p.paths, d.resumable)
