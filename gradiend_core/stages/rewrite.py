"""rewrite: apply the selected update to the base model and save it with its tokenizer.

The result loads with `transformers.pipeline(TASK, model=DIR)`, TASK being the objective's pipeline task
("fill-mask" for MLMs, "text-generation" for CLMs; recorded as `pipeline_task`).
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
from .common import pin_torch_threads
from .declaration import Report, Stage, needs

N_EXAMPLES = 8


def summary_key(r: dict, classes: list[str], default: str) -> tuple[str, str]:
    """(target class, its grid selection key); the default target is the GRADIEND's +1 class."""
    target = r["target_class"] or default
    if target not in classes:
        from ..config_loader import suggest

        raise ConfigError(f"rewrite.target_class '{target}' is not a class{suggest(target, classes)}; "
                          f"use one of {', '.join(classes)}")
    return target, target if r["direction"] == "strengthen" else f"{target}_weaken"


def build(out: Path, conf: dict, inputs: dict, progress, paths: dict) -> dict:
    pin_torch_threads(2)  # see common.pin_torch_threads
    r = conf["rewrite"]
    class_words = dict(info(inputs["data"])["classes"])  # ordered [name, words] pairs
    base = load_prepared_model(inputs["base"])
    g = load_gradiend(out_path(inputs["model"]) / "model", expected_digest=base.digest)
    plus = next(c for c, d in g.directions.items() if d > 0)
    target, key = summary_key(r, list(class_words), plus)
    summary = read_json(out_path(inputs["grid"]) / "grid.json")["summary"]
    if key not in summary:
        raise ConfigError(f"the decoder grid has no selection for '{key}'; available: {', '.join(summary)}")
    chosen = summary[key]
    rewritten = g.rewrite(base.model, lr=chosen["learning_rate"], feature_factor=chosen["feature_factor"])
    rewritten.save_pretrained(out / "model")
    base.tokenizer.save_pretrained(out / "model")
    examples = example_probabilities(base, rewritten, out_path(inputs["data"]), class_words, target, r["direction"])
    atomic_write_json(out / "examples.json", examples)
    return {"target_class": target, "direction": r["direction"], "selected": chosen,
            "model_subdir": "model", "examples_mean": _means(examples),
            "objective": base.objective.name, "pipeline_task": base.objective.pipeline_task}


def example_probabilities(base, rewritten, data_dir: Path, class_words: dict, target: str, direction: str) -> list:
    """P(target class) before/after on a few held-out sentences of the other class (own class to weaken)."""
    training, _ = read_dataset(data_dir)
    rows = decoder_rows(training)
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


STAGE = Stage(name="rewrite", version="1", sections=("rewrite",), build=build,
              inputs=(needs("grid", "decoder-grid"), needs("model", "post-prune", "select-seed"),
                      needs("base", "prepare-model"), needs("data", "create-data")),
              report=Report(artifacts=report.artifacts))
