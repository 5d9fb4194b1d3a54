import pytest
import torch
from torch import nn

from gradiend_core.errors import ConfigError, ModelError
from gradiend_core.param_map import ParamMap, ParamSpec, pattern_regex, select_parameters
from gradiend_core.testing import tiny_clm, tiny_mlm


@pytest.fixture(scope="module")
def mlm():
    return tiny_mlm(seed=0, hidden=16)[0]


@pytest.fixture(scope="module")
def clm():
    return tiny_clm(seed=0, hidden=16)[0]


def test_default_bert_selection_is_backbone_without_head(mlm):
    pm = select_parameters(mlm)
    names = set(pm.names)
    assert "bert.embeddings.word_embeddings.weight" in names  # tied MLM decoder appears as embeddings
    assert not any(n.startswith("cls.") for n in names)
    assert all(n.startswith("bert.") for n in names)
    all_bert = [n for n, _ in mlm.named_parameters() if n.startswith("bert.")]
    assert pm.names == all_bert  # model order kept, nothing else dropped
    assert pm.input_dim == pm.unpruned_length == sum(p.numel() for n, p in mlm.named_parameters() if n in names)


def test_default_gpt2_selection_excludes_tied_lm_head(clm):
    pm = select_parameters(clm)
    assert "lm_head.weight" not in pm.names
    assert "transformer.wte.weight" in pm.names and "transformer.ln_f.weight" in pm.names
    assert all(n.startswith("transformer.") for n in pm.names)


def test_untied_head_is_excluded():
    class LM(nn.Module):
        base_model_prefix = "body"

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 3))
            self.lm_head = nn.Linear(3, 5)

    pm = select_parameters(LM())
    assert pm.names == ["body.0.weight", "body.1.weight", "body.1.bias"]


def test_include_exclude_layer_patterns(mlm, clm):
    pm = select_parameters(mlm, include=["*.layer.1.*"])
    assert pm.names and all(".layer.1." in n for n in pm.names)
    assert len(pm.names) == len([n for n, _ in mlm.named_parameters() if "encoder.layer.1." in n])
    pm = select_parameters(mlm, include=["*.layer.1.*"], exclude=["*.bias", "*LayerNorm*"])
    assert all(n.endswith(".weight") and "LayerNorm" not in n for n in pm.names)
    pc = select_parameters(clm, include=["transformer.h.1.*"])
    assert pc.names and all(n.startswith("transformer.h.1.") for n in pc.names)
    pc2 = select_parameters(clm, include=["*.h.1.*"])
    assert pc2.names == pc.names
    pe = select_parameters(clm, exclude=["transformer.h.*"])
    assert pe.names == ["transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                        "transformer.ln_f.bias"]


def test_pattern_dot_is_literal_and_full_match():
    rx = pattern_regex("a.b*")
    assert rx.fullmatch("a.b.c") and not rx.fullmatch("axb.c") and not rx.fullmatch("x.a.b")


def test_unknown_pattern_error_lists_close_names(mlm, clm):
    with pytest.raises(ConfigError) as e:
        select_parameters(clm, include=["*.layer.1.*"])
    assert "transformer.h.1.*" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        select_parameters(mlm, include=["bert.encoder.layer.0.attention.self.quer.weight"])
    assert "bert.encoder.layer.0.attention.self.query.weight" in str(e.value)
    with pytest.raises(ConfigError) as e:
        select_parameters(mlm, exclude=["*.does_not_exist"])
    with pytest.raises(ConfigError, match="LM-head"):
        select_parameters(mlm, include=["cls.*"])
    with pytest.raises(ConfigError):
        select_parameters(mlm, include=["*"], exclude=["*"])


def test_repr_rule():
    assert ParamSpec("a", (10, 10)).repr == "all"
    assert ParamSpec("a", (10, 10), torch.arange(100)).indices is None
    assert ParamSpec("a", (10, 10), torch.arange(19)).repr == "indices"  # 19*4 = 76 < 80
    assert ParamSpec("a", (10, 10), torch.arange(20)).repr == "mask"  # 80 is not < 80
    assert ParamSpec("a", (10, 10), torch.arange(0)).repr == "indices"


def _toy_map():
    return ParamMap([ParamSpec("a", (2, 3)), ParamSpec("b", (4,)), ParamSpec("c", (3, 2))])


def test_offsets_and_gather_order():
    pm = _toy_map()
    assert pm.base_offsets == {"a": 0, "b": 6, "c": 10} and pm.input_dim == 16
    t = {"a": torch.arange(6.).reshape(2, 3), "b": torch.arange(10., 14.), "c": torch.arange(14., 20.).reshape(3, 2)}
    assert pm.gather(t).tolist() == [0., 1., 2., 3., 4., 5., 10., 11., 12., 13., 14., 15., 16., 17., 18., 19.]
    pruned = pm.select(torch.tensor([1, 5, 6, 15]))
    assert torch.equal(pruned.gather(t), torch.tensor([1., 5., 10., 19.]))


def test_prune_twice_keeps_base_global_indices():
    pm = _toy_map()
    assert torch.equal(pm.local_to_global(), torch.arange(16))
    p1 = pm.select(torch.tensor([0, 2, 5, 7, 9, 11, 14, 15]))
    assert p1.input_dim == 8 and p1.unpruned_length == 16
    assert p1.local_to_global().tolist() == [0, 2, 5, 7, 9, 11, 14, 15]
    p2 = p1.select(torch.tensor([1, 2, 6]))  # local dims of p1 -> global 2, 5, 14
    assert p2.local_to_global().tolist() == [2, 5, 14]
    assert p2.to_global(torch.tensor([2, 0])).tolist() == [14, 2]
    assert p2["b"].n_selected == 0 and p2.base_offsets == pm.base_offsets  # empty specs stay for stable offsets
    d = p2.decode_global(14)
    assert d["param"] == "c" and d["flat_index"] == 4 and d["coords"] == (2, 0) and d["selected"]
    d = p2.decode_global(5)
    assert d["param"] == "a" and d["coords"] == (1, 2)
    assert not p2.decode_global(7)["selected"]


def test_prune_on_real_model_decodes_to_right_entries(mlm):
    pm = select_parameters(mlm, include=["*.layer.1.attention.self.*"])
    params = dict(mlm.named_parameters())
    full = pm.gather(params)
    g = torch.Generator().manual_seed(0)
    keep1 = torch.randperm(pm.input_dim, generator=g)[:300].sort().values
    p1 = pm.select(keep1)
    keep2 = torch.randperm(300, generator=g)[:40].sort().values
    p2 = p1.select(keep2)
    glob = p2.local_to_global()
    assert torch.equal(glob, keep1[keep2])  # unpruned map: global == local
    vals = p2.gather(params)
    for i in range(0, 40, 7):
        d = p2.decode_global(int(glob[i]))
        assert params[d["param"]].detach()[d["coords"]] == vals[i] == full[glob[i]]


def test_gather_grads_and_missing_grad(mlm):
    pm = select_parameters(mlm, include=["bert.embeddings.*"])
    mlm.zero_grad(set_to_none=True)
    with pytest.raises(ModelError, match="bert.embeddings"):
        pm.gather_grads(mlm)
    ids = torch.tensor([[2, 7, 8, 3]])
    mlm(input_ids=ids, labels=ids).loss.backward()
    g = pm.gather_grads(mlm)
    params = dict(mlm.named_parameters())
    assert torch.equal(g, torch.cat([params[n].grad.reshape(-1) for n in pm.names]))
    sub = pm.select(torch.tensor([3, 100, 2000]))
    assert torch.equal(sub.gather_grads(mlm), g[[3, 100, 2000]])
    mlm.zero_grad(set_to_none=True)


def test_scatter_add_and_copy_exact():
    lin = nn.Linear(3, 2)
    pm = ParamMap([ParamSpec("weight", (2, 3), torch.tensor([1, 4])), ParamSpec("bias", (2,))])
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    delta = torch.tensor([1.0, -2.0, 0.5, 3.0])
    pm.scatter_add_(lin, delta, 0.1)
    exp_w = w0.clone().reshape(-1)
    exp_w[[1, 4]] = exp_w[[1, 4]] + 0.1 * delta[:2]
    assert torch.equal(lin.weight.detach().reshape(-1), exp_w)
    assert torch.equal(lin.bias.detach(), b0 + 0.1 * delta[2:])
    pm.scatter_copy_(lin, pm.gather({"weight": w0, "bias": b0}))
    assert torch.equal(lin.weight.detach(), w0) and torch.equal(lin.bias.detach(), b0)
    with pytest.raises(ConfigError):
        pm.scatter_add_(lin, torch.zeros(5), 1.0)
    with pytest.raises(ModelError, match="weight"):
        pm.scatter_add_(nn.Linear(4, 2), delta, 1.0)


def test_json_roundtrip_and_digest():
    pm = ParamMap([ParamSpec("a", (10, 10), torch.tensor([3, 50])), ParamSpec("b", (5,)),
                   ParamSpec("c", (10,), torch.arange(9)), ParamSpec("d", (4,), torch.tensor([], dtype=torch.long))])
    j = pm.to_json()
    assert [r["repr"] for r in j["param_map"]] == ["indices", "all", "mask", "indices"]
    tensors = pm.tensors()
    assert tensors["L0"].dtype == torch.int64 and tensors["L2"].dtype == torch.uint8
    back = ParamMap.from_json(j, tensors)
    assert back.digest() == pm.digest() and torch.equal(back.local_to_global(), pm.local_to_global())
    assert pm.digest() != pm.select(torch.tensor([0, 1])).digest()
    with pytest.raises(ModelError, match="L0"):
        ParamMap.from_json(j, {k: v for k, v in tensors.items() if k != "L0"})
