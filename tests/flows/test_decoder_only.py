"""A decoder-only model (tiny GPT-2, byte-level BPE) through the whole flow with each causal objective:
`clm` (next token after the prefix) and `clm_sequence_cloze` (the sentence with the word in place); the
rewritten model loads as a text-generation pipeline and generates. The experiment is
examples/gpt2_pronoun_number.yaml at tiny sizes."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gradiend_core.store import open_store
from gradiend_core.testing import tiny_experiment

EXAMPLE = Path(__file__).parents[2] / "examples" / "gpt2_pronoun_number.yaml"


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import save_tiny, tiny_clm

    model, tok = tiny_clm(seed=0, hidden=32, layers=2, words=builtin_vocabulary())
    return save_tiny(model, tok, tmp_path_factory.mktemp("models") / "tiny-gpt2")


def decoder_experiment(model_dir, objective: str) -> dict:
    """examples/gpt2_pronoun_number.yaml at tiny sizes, on the tiny GPT-2 instead of the cached `gpt2`."""
    exp = yaml.safe_load(EXAMPLE.read_text())
    for section, values in tiny_experiment(model_dir).items():
        if isinstance(values, dict):
            exp.setdefault(section, {}).update(values)
    exp["model"].update(objective=objective, fit_head="never")
    exp["train"].update(max_seeds=1, max_steps=8)
    exp["decoder_grid"]["learning_rates"] = [1.0]
    return exp


@pytest.mark.parametrize("objective", ["clm", "clm_sequence_cloze"])
def test_decoder_only_flow_rewrites_a_loadable_text_generation_model(objective, prefect_home, tiny_gpt2_dir,
                                                                     tmp_path):
    from transformers import pipeline

    from flows.api import run_experiment

    (tmp_path / "gpt2.yaml").write_text(yaml.safe_dump(decoder_experiment(tiny_gpt2_dir, objective)))
    run = run_experiment(tmp_path / "gpt2.yaml", store=tmp_path / "store")
    (sid,) = run.rewrites()
    examples = json.loads((run.output(sid) / "examples.json").read_text())
    assert examples and all(0.0 <= e["p_3SG_rewritten"] <= 1.0 for e in examples)
    st = run.summary["stages"][sid]
    info = open_store(run.store).manifest(st["stage"], st["key"])["info"]
    assert (info["objective"], info["pipeline_task"]) == (objective, "text-generation")
    probs = pd.read_parquet(run.output("decoder-grid") / "row_probs.parquet")
    total = probs["p_3SG"] + probs["p_3PL"]  # the cloze's softmax runs across the candidates of both classes
    assert ((total - 1).abs() < 1e-9).all() == (objective == "clm_sequence_cloze")
    model, _ = run.load_model()
    assert type(model).__name__ == "GPT2LMHeadModel"
    generate = pipeline("text-generation", model=str(run.output(sid) / "model"))
    out = generate("the doctor said", max_new_tokens=3, do_sample=False)
    assert out[0]["generated_text"].startswith("the doctor said") and len(out[0]["generated_text"]) > 15
