"""seq2seq_encoder_mlm through the whole flow (CLI) on a tiny T5 and a tiny BART: extraction, pre-prune,
training, LMS, decoder grid and rewrite; the rewritten model differs from the base only in the encoder
and the shared embeddings and runs in the transformers pipeline the run reports for it."""
import pytest
import torch
import yaml

from gradiend_core.testing import save_tiny, tiny_bart, tiny_experiment, tiny_t5


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_whole_flow_and_the_rewritten_model_loads(family, run_json, prefect_home, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, pipeline

    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.store import open_store

    model, tok = (tiny_t5 if family == "t5" else tiny_bart)(seed=0, words=builtin_vocabulary())
    model_dir = save_tiny(model, tok, tmp_path / family)
    exp = tiny_experiment(model_dir, name=f"tiny-{family}")
    exp["train"]["max_seeds"] = 1
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    s = run_json(tmp_path / "exp.yaml", tmp_path / "store")

    m = {sid: open_store(tmp_path / "store").load(st["stage"], st["key"]) for sid, st in s["stages"].items()}
    assert m["prepare-model"]["info"]["objective"] == "seq2seq_encoder_mlm"
    assert m["prepare-model"]["info"]["head"] is None
    assert m["decoder-grid"]["info"] and 0 < s["metrics"]["selected"]["lms"] <= 1
    (rewrite,) = s["rewrites"]
    task = m[rewrite["id"]]["info"]["pipeline_task"]
    assert task == ("text-generation" if family == "t5" else "fill-mask")

    rewritten = AutoModelForSeq2SeqLM.from_pretrained(rewrite["model"])
    before, after = model.state_dict(), rewritten.state_dict()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("encoder" in n or "shared" in n or "embed_tokens" in n or n == "lm_head.weight"
                           for n in changed)
    pipe = pipeline(task, model=rewrite["model"])
    if task == "fill-mask":
        out = pipe("the doctor said that <mask> was tired .")
        assert len(out) == 5 and all(0 <= o["score"] <= 1 for o in out)
    else:
        out = pipe("the doctor said that <extra_id_0> was tired .", max_new_tokens=3, do_sample=False)
        assert isinstance(out[0]["generated_text"], str)
