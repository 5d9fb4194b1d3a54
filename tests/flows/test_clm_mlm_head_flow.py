"""clm_mlm_head through the whole flow (CLI) on a tiny GPT-2: prepare-model fits the auxiliary head over the
class words (keyed by them), then extraction, pre-prune, training, LMS, decoder grid and rewrite; the
rewritten decoder runs in a text-generation pipeline and keeps its head for this objective's loader."""
import pytest
import torch
import yaml

from gradiend_core.testing import save_tiny, tiny_clm, tiny_experiment


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    from gradiend_core.data.builtin import builtin_vocabulary

    return save_tiny(*tiny_clm(seed=0, words=builtin_vocabulary()), tmp_path_factory.mktemp("models") / "gpt2")


def test_whole_flow_with_the_auxiliary_head(gpt2_dir, run_json, prefect_home, tmp_path):
    from transformers import AutoModelForCausalLM, pipeline

    from gradiend_core.lm import load_base_model
    from gradiend_core.store import open_store

    exp = tiny_experiment(gpt2_dir, name="tiny-aux-head")
    exp["model"].update(objective="clm_mlm_head", fit_head="auto", head={"steps": 40, "max_texts": 200})
    exp["train"]["max_seeds"] = 1
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    s = run_json(tmp_path / "exp.yaml", tmp_path / "store")

    m = {sid: open_store(tmp_path / "store").load(st["stage"], st["key"]) for sid, st in s["stages"].items()}
    prep = m["prepare-model"]["info"]
    assert prep["objective"] == "clm_mlm_head" and prep["head"]["words"] == ["he", "she", "it", "they"]
    assert 0 < s["metrics"]["selected"]["lms"] <= 1
    (rewrite,) = s["rewrites"]
    assert m[rewrite["id"]]["info"]["pipeline_task"] == "text-generation"

    fitted = load_base_model(m["prepare-model"]["path"] + "/model", objective="clm_mlm_head")
    rewritten = load_base_model(rewrite["model"], objective="clm_mlm_head")  # the head travels with the decoder
    assert torch.equal(fitted.model.mlm_aux_head.weight, rewritten.model.mlm_aux_head.weight)
    before, after = fitted.model.state_dict(), rewritten.model.state_dict()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith("transformer.") or n == "lm_head.weight" for n in changed)
    assert AutoModelForCausalLM.from_pretrained(rewrite["model"]).config.model_type == "gpt2"
    out = pipeline("text-generation", model=rewrite["model"])("the doctor said that", max_new_tokens=3,
                                                               do_sample=False)
    assert out[0]["generated_text"].startswith("the doctor said that")

    with_other_words = dict(exp, data=dict(exp["data"], classes={"3SG": ["he", "she"], "3PL": ["they"]}))
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(with_other_words))
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan

    keys = [plan(load_experiment(tmp_path / f))["prepare-model"].key for f in ("exp.yaml", "other.yaml")]
    assert keys[0] == s["stages"]["prepare-model"]["key"] and keys[0] != keys[1]  # the class words key the fit
