"""The pipeline DAG: every stage's config slice, inputs and content address, computed up front.

Keys depend only on config slices and upstream keys, so the whole plan (and which outputs are
already in the store) is known before anything runs; bad config fails here, before any stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

from ..seeds import seeds_for
from . import (create_data, decoder_grid, evaluate_encoder, extract_gradients, post_prune, pre_prune,
               prepare_model, rewrite, select_seed, train_seed)
from .runner import stage_key


@dataclass
class StagePlan:
    id: str                    # unique in the plan, e.g. "train-seed-1"
    module: ModuleType
    conf: dict
    paths: dict                # where input files live (not hashed: their digests are in conf)
    inputs: dict[str, str] = field(default_factory=dict)   # input name -> plan id
    key: str = ""

    @property
    def stage(self) -> str:
        return self.module.NAME


def plan(cfg) -> dict[str, StagePlan]:
    """Ordered plan (dependencies first) for an ExperimentConfig."""
    steps: list[StagePlan] = []

    def add(id_, module, conf, inputs=None, paths=None):
        hook = getattr(module, "paths", None)  # unhashed input locations; most stages have none
        p = StagePlan(id_, module, conf, paths if paths is not None else (hook(cfg) if hook else {}), inputs or {})
        done = {s.id: s for s in steps}
        p.key = stage_key(p.stage, module.VERSION, conf, {n: done[i].key for n, i in p.inputs.items()})
        steps.append(p)
        return p.id

    m = add("prepare-model", prepare_model, prepare_model.config_slice(cfg))
    d = add("create-data", create_data, create_data.config_slice(cfg))
    x = add("extract-gradients", extract_gradients, extract_gradients.config_slice(cfg), {"model": m, "data": d})
    pp = add("pre-prune", pre_prune, pre_prune.config_slice(cfg), {"extract": x})
    seeds = [add(f"train-seed-{s}", train_seed, train_seed.config_slice(cfg, s), {"extract": x, "pre_prune": pp})
             for s in seeds_for(cfg.train.seed, cfg.train.max_seeds)]
    sel = add("select-seed", select_seed, select_seed.config_slice(cfg),
              {f"seed_{i.rsplit('-', 1)[1]}": i for i in seeds})
    model = sel
    if cfg.post_prune.enabled:
        model = add("post-prune", post_prune, post_prune.config_slice(cfg), {"model": sel})
    add("evaluate-encoder", evaluate_encoder, evaluate_encoder.config_slice(cfg),
        {"model": model, "extract": x, "pre_prune": pp})
    g = add("decoder-grid", decoder_grid, decoder_grid.config_slice(cfg), {"model": model, "base": m, "data": d})
    add("rewrite", rewrite, rewrite.config_slice(cfg), {"grid": g, "model": model, "base": m, "data": d})
    return {s.id: s for s in steps}
