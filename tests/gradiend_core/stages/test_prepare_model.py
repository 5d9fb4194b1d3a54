"""prepare-model: the recorded digest is the weights' digest, a checkpoint with its head is used in place,
and a headless encoder gets a head fitted into the output (then loadable as a masked LM)."""
from gradiend_core.store import LocalStore
from gradiend_core.experiment import load_experiment
from gradiend_core.lm import load_base_model
from gradiend_core.manifests import load_prepared_model, model_dir
from gradiend_core.stages.plan import plan, run_step
from gradiend_core.testing import save_tiny


def test_checkpoint_with_head_is_used_in_place(tiny_run, stage_model_dir):
    m = tiny_run.done["prepare-model"]
    i = m["info"]
    assert i["head"] is None and i["objective"] == "mlm"
    assert model_dir(m) == stage_model_dir.resolve()
    assert i["digest"] == load_base_model(stage_model_dir).digest
    assert load_prepared_model(m).digest == i["digest"]
    assert not (tiny_run.out("prepare-model") / "model").exists()


def test_headless_encoder_gets_a_fitted_head(tmp_path):
    from transformers import BertModel

    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import tiny_mlm

    mlm, tok = tiny_mlm(seed=1, hidden=32, layers=1, words=builtin_vocabulary())
    encoder = BertModel(mlm.config)
    encoder.load_state_dict(mlm.bert.state_dict(), strict=False)
    src = save_tiny(encoder, tok, tmp_path / "headless")
    cfg = load_experiment(None, [f"model.name_or_path={src}", "model.fit_head=auto", "model.head.steps=5",
                                 "model.head.max_texts=64"])
    m = run_step(LocalStore(tmp_path / "store"), plan(cfg)["prepare-model"], {})
    assert m["info"]["head"]["steps"] == 5 and (tmp_path / "store" / "prepare-model" / m["key"] / "model").is_dir()
    base = load_prepared_model(m)
    assert type(base.model).__name__ == "BertForMaskedLM" and base.digest == m["info"]["digest"]
