import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gradiend_core.checkpoint import load_gradiend, save_gradiend
from gradiend_core.errors import ModelError
from gradiend_core.gradiend import BaseIdentity, Gradiend
from gradiend_core.model import GradiendModel
from gradiend_core.param_map import ParamMap, select_parameters
from gradiend_core.testing import tiny_mlm


@pytest.fixture(scope="module")
def mlm():
    return tiny_mlm(seed=0, hidden=16)[0]


def _digest(model):
    # stand-in for gradiend_core.lm.weights_digest: any deterministic function of the weights
    import hashlib
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode() + v.detach().numpy().tobytes())
    return h.hexdigest()


def _pruned_gradiend(mlm, latent_dim=2, activation="gelu"):
    pm = select_parameters(mlm, include=["*.layer.1.attention.*", "bert.embeddings.LayerNorm.*"])
    g = Gradiend(GradiendModel(pm.input_dim, latent_dim, activation, "tanh", seed=11), pm,
                 source="factual", target="diff", directions={"he": 1, "she": -1, "it": 0},
                 base=BaseIdentity("tiny-mlm", _digest(mlm)),
                 training={"best_score_checkpoint": {"correlation": 0.8123456789012345, "global_step": 40},
                           "losses": [1.5, 0.3333333333333333, float("1e-38")]})
    # a mix of reprs: some tensors keep 9/10 entries (mask), some a few (indices), LayerNorm all
    imp = torch.zeros(pm.input_dim)
    glob = pm.local_to_global()
    for i, s in enumerate(pm.specs):
        lo = pm.base_offsets[s.name]
        sel = (glob >= lo) & (glob < lo + s.numel)
        if "LayerNorm" in s.name:
            imp[sel] = 1.0
        elif i % 2:
            imp[sel] = (torch.arange(int(sel.sum())) % 10 != 0).float()
        else:
            imp[sel] = (torch.arange(int(sel.sum())) % 50 == 0).float()
    return g.prune(threshold=0.5, importance=imp)


def _assert_same(a: Gradiend, b: Gradiend):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)
    assert a.model.architecture() == b.model.architecture()
    assert a.param_map.digest() == b.param_map.digest()
    assert torch.equal(a.param_map.local_to_global(), b.param_map.local_to_global())
    assert [s.shape for s in a.param_map.specs] == [s.shape for s in b.param_map.specs]
    assert (a.source, a.target, a.directions, a.base) == (b.source, b.target, b.directions, b.base)
    assert a.training == b.training


def test_roundtrip_bit_exact(tmp_path, mlm):
    g = _pruned_gradiend(mlm)
    assert {s.repr for s in g.param_map.specs} == {"all", "mask", "indices"}
    out = save_gradiend(g, tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "context.json", "mapping.safetensors",
                                                     "model.safetensors", "training.json"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format_version"] == 1
    assert cfg["architecture"] == {"input_dim": g.model.input_dim, "latent_dim": 2, "activation_encoder": "gelu",
                                   "activation_decoder": "tanh", "bias_decoder": True, "dtype": "float32"}
    assert cfg["base"] == {"name_or_path": "tiny-mlm", "digest": _digest(mlm)}
    w = load_file(str(out / "model.safetensors"))
    P = g.model.input_dim
    assert {k: tuple(v.shape) for k, v in w.items()} == {"encoder.weight": (2, P), "encoder.bias": (2,),
                                                         "decoder.weight": (P, 2), "decoder.bias": (P,)}
    back = load_gradiend(out, base_model=mlm, digest_fn=_digest)
    _assert_same(g, back)
    x = torch.randn(4, P)
    assert torch.equal(back.encode(x), g.encode(x))
    assert torch.equal(back.rewrite(mlm, 2.0, -1.0).state_dict()["bert.embeddings.LayerNorm.weight"],
                       g.rewrite(mlm, 2.0, -1.0).state_dict()["bert.embeddings.LayerNorm.weight"])


def test_unpruned_no_bias_bf16_without_training_roundtrip(tmp_path, mlm):
    pm = select_parameters(mlm, include=["bert.embeddings.LayerNorm.*"])
    g = Gradiend(GradiendModel(pm.input_dim, 1, "id", "id", bias_decoder=False, dtype=torch.bfloat16, seed=1), pm)
    out = save_gradiend(g, tmp_path / "c")
    assert not (out / "training.json").exists()
    assert load_file(str(out / "mapping.safetensors")) == {}
    back = load_gradiend(out)
    _assert_same(g, back)
    assert back.model.decoder.bias is None and back.model.dtype == torch.bfloat16


def test_save_overwrites_atomically(tmp_path, mlm):
    g = _pruned_gradiend(mlm)
    out = save_gradiend(g, tmp_path / "c")
    g2 = g.invert()
    g2.training = None
    save_gradiend(g2, out)
    back = load_gradiend(out)
    _assert_same(g2, back)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp or old dirs left behind


def test_wrong_base_digest_rejected(tmp_path, mlm):
    g = _pruned_gradiend(mlm)
    out = save_gradiend(g, tmp_path / "c")
    other = tiny_mlm(seed=1, hidden=16)[0]  # same shapes, different weights
    with pytest.raises(ModelError) as e:
        load_gradiend(out, base_model=other, digest_fn=_digest)
    msg = str(e.value)
    assert f"trained on base model {_digest(mlm)} but got {_digest(other)}" in msg and "retrain" in msg
    with pytest.raises(ModelError, match="trained on base model"):
        load_gradiend(out, expected_digest="0" * 64)
    assert load_gradiend(out, expected_digest=_digest(mlm)).model.input_dim == g.model.input_dim


def test_shape_mismatch_with_base_model_names_tensor(tmp_path, mlm):
    g = _pruned_gradiend(mlm)
    out = save_gradiend(g, tmp_path / "c")
    smaller = tiny_mlm(seed=0, hidden=8)[0]
    with pytest.raises(ModelError, match=r"'bert\.embeddings\.LayerNorm\.weight' has shape \(8,\)"):
        load_gradiend(out, base_model=smaller, expected_digest=_digest(mlm))


def test_corrupted_checkpoints_rejected(tmp_path, mlm):
    g = _pruned_gradiend(mlm)
    out = save_gradiend(g, tmp_path / "c")
    w = load_file(str(out / "model.safetensors"))
    w["decoder.bias"] = w["decoder.bias"][:-1].clone()
    save_file(w, str(out / "model.safetensors"))
    with pytest.raises(ModelError, match="decoder.bias"):
        load_gradiend(out)

    out = save_gradiend(g, tmp_path / "d")
    cfg = json.loads((out / "config.json").read_text())
    cfg["architecture"]["input_dim"] += 1
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="encoder.weight"):
        load_gradiend(out)

    out = save_gradiend(g, tmp_path / "e")
    m = load_file(str(out / "mapping.safetensors"))
    m.pop(sorted(m)[0])
    save_file(m, str(out / "mapping.safetensors"))
    with pytest.raises(ModelError, match="mapping tensor"):
        load_gradiend(out)

    for name in ("config.json", "model.safetensors", "mapping.safetensors", "context.json"):
        out = save_gradiend(g, tmp_path / f"f_{name}")
        (out / name).unlink()
        with pytest.raises(ModelError, match=name.replace(".", r"\.")):
            load_gradiend(out)
    with pytest.raises(ModelError, match="does not exist"):
        load_gradiend(tmp_path / "nope")


def test_uses_lm_weights_digest_when_available(tmp_path, mlm, monkeypatch):
    import gradiend_core.checkpoint as ck
    g = _pruned_gradiend(mlm)
    out = save_gradiend(g, tmp_path / "c")
    monkeypatch.setattr(ck, "_lm_weights_digest", lambda: (lambda m: "f" * 64))
    with pytest.raises(ModelError, match="but got f{64}"):
        load_gradiend(out, base_model=mlm)
    monkeypatch.setattr(ck, "_lm_weights_digest", lambda: _digest)
    _assert_same(g, load_gradiend(out, base_model=mlm))


def test_param_map_json_shape_matches_contract(tmp_path, mlm):
    g = _pruned_gradiend(mlm)
    out = save_gradiend(g, tmp_path / "c")
    rows = json.loads((out / "config.json").read_text())["mapping"]["param_map"]
    maps = load_file(str(out / "mapping.safetensors"))
    for i, (row, spec) in enumerate(zip(rows, g.param_map.specs)):
        assert row["name"] == spec.name and tuple(row["shape"]) == spec.shape
        assert row["num_selected"] == spec.n_selected and row["repr"] == spec.repr
        assert row["key"] == (None if spec.repr == "all" else f"L{i}")
        if spec.repr == "indices":
            assert maps[row["key"]].dtype == torch.int64 and torch.equal(maps[row["key"]], spec.indices)
        elif spec.repr == "mask":
            assert tuple(maps[row["key"]].shape) == spec.shape
    assert ParamMap.from_json({"param_map": rows}, maps).digest() == g.param_map.digest()
    ctx = json.loads((out / "context.json").read_text())
    assert ctx == {"source": "factual", "target": "diff", "directions": {"he": 1, "she": -1, "it": 0}}


def test_load_with_base_model_uses_lm_weights_digest(tmp_path, mlm):
    from gradiend_core.lm import weights_digest
    g = _pruned_gradiend(mlm)
    g.base = BaseIdentity("tiny-mlm", weights_digest(mlm))
    out = save_gradiend(g, tmp_path / "c")
    _assert_same(g, load_gradiend(out, base_model=mlm))
    with pytest.raises(ModelError, match="load the matching base model or retrain"):
        load_gradiend(out, base_model=tiny_mlm(seed=2, hidden=16)[0])
