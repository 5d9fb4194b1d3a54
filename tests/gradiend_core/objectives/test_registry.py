import subprocess
import sys

import pytest

from gradiend_core import objectives
from gradiend_core.errors import ConfigError, ModelError
from gradiend_core.objectives import get_objective, names, register, resolve
from gradiend_core.objectives.base import Objective
from gradiend_core.testing import tiny_clm, tiny_mlm


@pytest.fixture(scope="module")
def configs():
    return {"bert": tiny_mlm()[0].config, "gpt2": tiny_clm()[0].config}


def test_names_and_instances():
    assert names() == ["clm", "clm_mlm_head", "clm_sequence_cloze", "mlm", "seq2seq_encoder_mlm"]
    mlm, clm = get_objective("mlm"), get_objective("clm")
    assert (mlm.name, clm.name) == ("mlm", "clm")
    assert get_objective("mlm") is mlm and get_objective(mlm) is mlm  # one instance; an instance passes through
    assert (mlm.pipeline_task, clm.pipeline_task) == ("fill-mask", "text-generation")
    assert mlm.fits_head and not clm.fits_head
    assert mlm != clm and mlm == type(mlm)()  # instances of one family are interchangeable


def test_names_import_no_model_code():
    code = ("import sys; from gradiend_core.objectives import names; "
            "assert names() == ['clm', 'clm_mlm_head', 'clm_sequence_cloze', 'mlm', 'seq2seq_encoder_mlm']; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_auto_resolution(configs):
    from transformers import BertConfig, T5Config, ViTConfig, WhisperConfig

    assert resolve(configs["bert"]).name == "mlm"
    assert resolve(configs["gpt2"], "auto").name == "clm"
    assert resolve(BertConfig(is_decoder=True)).name == "clm"  # a BERT decoder is a causal LM
    assert resolve(T5Config()).name == "seq2seq_encoder_mlm"
    with pytest.raises(ModelError, match="model type 'whisper' is encoder-decoder"):
        resolve(WhisperConfig())
    with pytest.raises(ModelError, match="model type 'vit' has neither a masked-LM nor a causal-LM head"):
        resolve(ViTConfig())


def test_requested_objective_must_serve_the_model(configs):
    assert resolve(configs["bert"], "mlm").name == "mlm"
    assert resolve(configs["gpt2"], "clm").name == "clm"
    with pytest.raises(ModelError, match=r"^objective 'mlm' cannot serve model type 'gpt2' \(it has no masked-LM "
                                         r"head\); use objective 'auto' or one that can: "
                                         r"clm, clm_mlm_head, clm_sequence_cloze$"):
        resolve(configs["gpt2"], "mlm")
    assert resolve(configs["gpt2"], "clm_sequence_cloze").name == "clm_sequence_cloze"
    with pytest.raises(ModelError, match=r"^objective 'clm_sequence_cloze' cannot serve model type 'bert' \(it is "
                                         r"not a decoder-only causal LM, .*\); use objective 'auto' or one that can: "
                                         r"clm, mlm$"):
        resolve(configs["bert"], "clm_sequence_cloze")


def test_unknown_name_is_a_config_error_naming_the_known_ones(configs):
    with pytest.raises(ConfigError, match=r"^unknown objective 'seq2seq'; use one of: clm, clm_mlm_head, "
                                          r"clm_sequence_cloze, mlm, "
                                          r"seq2seq_encoder_mlm "
                                          r"\(or 'auto'"):
        get_objective("seq2seq")
    with pytest.raises(ConfigError, match="use one of: clm, clm_mlm_head, clm_sequence_cloze, mlm, "
                                          "seq2seq_encoder_mlm"):
        resolve(configs["bert"], "seq2seq")


def test_experiment_validates_the_objective_name():
    from gradiend_core.experiment import ModelSection

    ModelSection(objective="clm").validate()
    with pytest.raises(ConfigError, match=r"model.objective: unknown objective 'mlmm' \(did you mean 'mlm'\?\); "
                                          "use auto or one of clm, clm_mlm_head, clm_sequence_cloze, mlm"):
        ModelSection(objective="mlmm").validate()


def test_a_new_family_is_one_registered_class(monkeypatch, configs):
    monkeypatch.setattr(objectives, "_CLASSES", dict(objectives._CLASSES))
    monkeypatch.setattr(objectives, "_INSTANCES", dict(objectives._INSTANCES))
    clm_cls = type(get_objective("clm"))

    @register
    class Cloze(clm_cls):  # served only when requested: never picked by auto
        name = "cloze_test"

        def auto_score(self, config) -> int:
            return 0

        def cannot_serve(self, config):
            return None

    assert "cloze_test" in names() and isinstance(get_objective("cloze_test"), Objective)
    assert resolve(configs["gpt2"]).name == "clm"
    assert resolve(configs["gpt2"], "cloze_test").name == "cloze_test"
    with pytest.raises(TypeError, match="needs a class attribute `name`"):
        register(type("Nameless", (clm_cls,), {"name": "auto"}))
