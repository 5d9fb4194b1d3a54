"""rewrite: apply the selected update to the base model and save it with its tokenizer, once per request.

One plan step per request {class, direction} of `rewrite.targets` (or the `target_class` + `direction`
shorthand), fanned out like train-seed: step ids `rewrite-<class>-<direction>`, each with its own key
(its request and the upstream keys, so adding a request re-runs no other). Each step reads the
decoder grid's selection for its request ("<class>" to strengthen, "<class>_weaken" to weaken).
The result loads with `transformers.pipeline(TASK, model=DIR)`, TASK being the objective's pipeline task
("fill-mask" for MLMs and BART, "text-generation" for CLMs and T5: `Objective.pipeline_task_for`; recorded as
`pipeline_task`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..checkpoint import load_gradiend
from ..data.creation import read_dataset
from ..decoder_eval import decoder_rows, prepare_probability_rows, score_probabilities
from ..errors import ConfigError
from ..io import atomic_write_json, read_json
from ..reports import rewrite as report
from ..manifests import info, load_prepared_model, out_path
from .common import base_placement, pin_torch_threads, placement
from .grid_parts import where
from .declaration import FanOut, Report, Stage, needs

N_EXAMPLES = 8


def summary_key(request: dict) -> str:
    """The decoder-grid summary entry of a request: "<class>" strengthens it, "<class>_weaken" weakens it."""
    return request["class"] if request["direction"] == "strengthen" else f"{request['class']}_weaken"


def request_label(request: dict) -> str:
    """A request in step ids and artifact keys: "<class>-<direction>"."""
    return f"{request['class']}-{request['direction']}"


def requests(cfg) -> list[dict]:
    """The checked requests; the shorthand's default class is the GRADIEND's +1 class (train.pair's first)."""
    return cfg.rewrite.requests(list(cfg.pair()))


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pin_torch_threads(2)  # see common.pin_torch_threads
    request = conf["request"]
    class_words = dict(info(inputs["data"])["classes"])  # ordered [name, words] pairs
    target, key = request["class"], summary_key(request)
    grid = read_json(out_path(inputs["grid"]) / "grid.json")
    summary, part = grid["summary"], grid["config"].get("part", "decoder")  # the part the grid scored
    if key not in summary:
        raise ConfigError(f"the decoder grid has no selection for '{key}'; available: {', '.join(summary)}")
    chosen = summary[key]
    base = load_prepared_model(inputs["base"], *base_placement(conf))  # saved in model.dtype
    g = load_gradiend(out_path(inputs["model"]) / "model", expected_digest=base.digest)
    rewritten = g.rewrite(base.model, lr=chosen["learning_rate"], feature_factor=chosen["feature_factor"], part=part)
    changed = changed_weights(g, base.model, rewritten)
    rewritten.save_pretrained(out / "model")
    base.tokenizer.save_pretrained(out / "model")
    examples = example_probabilities(base, rewritten, out_path(inputs["data"]), class_words, target,
                                     request["direction"], g.pair())
    atomic_write_json(out / "examples.json", examples)
    return {"target_class": target, "direction": request["direction"], "request": request_label(request),
            "selected": chosen, "part": part, "model_subdir": "model", "examples_mean": _means(examples),
            "objective": base.objective.name, "pipeline_task": base.objective.pipeline_task_for(base.model.config),
            "changed_weights": changed, **unchanged_warning(changed, chosen, request), **where(base)}


def changed_weights(g, base_model, rewritten) -> int:
    """How many of the GRADIEND's P selected base-model entries the rewrite changed (0: the saved
    model IS the base model: the selected update is zero, or too small for the model's dtype)."""
    before = g.param_map.gather(dict(base_model.named_parameters(remove_duplicate=False)))  # (P,)
    after = g.param_map.gather(dict(rewritten.named_parameters(remove_duplicate=False)))  # (P,)
    return int((before != after).sum())


def unchanged_warning(changed: int, chosen: dict, request: dict) -> dict:
    """{"warning": ...} when the rewritten model is the base model, or scores exactly as it does on every
    grid row and LMS position (logged by the task, shown in the run summary, kept in the manifest), else {}."""
    cell = f"the selected cell (feature factor {chosen['feature_factor']:g}, lr {chosen['learning_rate']:g})"
    if chosen.get("id") == "base":
        why = "the decoder grid selected no cell (no cell had a finite score for this request)"
    elif not changed:
        why = f"{cell} changes no weight (its update is zero, or below the model dtype's resolution)"
    elif chosen.get("change") == 0.0 and chosen.get("lms_diff") == 0.0:
        why = f"{cell} changes {changed} weights, but scores exactly as the base model on every grid row and LMS position"
    else:
        return {}
    return {"warning": f"the rewritten model ({request['direction']} {request['class']}) is in effect the base "
                       f"model: {why}; check the decoder grid (grid.parquet) and its learning rates"}


def example_probabilities(base, rewritten, data_dir: Path, class_words: dict, target: str, direction: str,
                          pair: tuple[str, str]) -> list:
    """P(target class) before/after on a few held-out sentences of the other class (own class to weaken)."""
    training, _ = read_dataset(data_dir)
    rows = decoder_rows(training, pair)
    want = rows["factual_class"] != target if direction == "strengthen" else rows["factual_class"] == target
    rows = rows[want].head(N_EXAMPLES)
    prepared = prepare_probability_rows(base.tokenizer, base.objective, rows, class_words)
    ci = prepared.classes.index(target)
    before = score_probabilities(base.model, prepared)[:, ci]
    after = score_probabilities(rewritten, prepared)[:, ci]
    return [{"masked": m, "factual": f, f"p_{target}_base": float(b), f"p_{target}_rewritten": float(a)}
            for m, f, b, a in zip(rows["masked"], rows["factual"], before, after)]


def _means(examples: list) -> dict:
    if not examples:
        return {}
    df = pd.DataFrame(examples)
    return {c: float(df[c].mean()) for c in df.columns if c.startswith("p_")}


# version 2: one step per request (its key: the request, not the whole section); the grid's `part` is used
STAGE = Stage(name="rewrite", version="2", sections=("rewrite",), build=build, conf=placement,
              inputs=(needs("grid", "decoder-grid"), needs("model", "post-prune", "select-seed"),
                      needs("base", "prepare-model"), needs("data", "create-data")),
              fanout=FanOut("request", requests, label=request_label),
              report=Report(artifacts=report.artifacts))
