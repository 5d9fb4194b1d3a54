import pytest
import torch

from gradiend_core.errors import ConfigError, ModelError
from gradiend_core.gradiend import Gradiend
from gradiend_core.model import GradiendModel
from gradiend_core.param_map import select_parameters
from gradiend_core.testing import tiny_clm, tiny_mlm


@pytest.fixture(scope="module")
def mlm():
    return tiny_mlm(seed=0, hidden=16)[0]


def _gradiend(model, include, latent_dim=1, seed=0, source="alternative", prune_to=None):
    pm = select_parameters(model, include=include)
    g = Gradiend(GradiendModel(pm.input_dim, latent_dim, seed=seed), pm, source=source,
                 directions={"m": 1, "f": -1, "n": 0}, training={"best": {"corr": 0.91}})
    if prune_to is not None:
        # keep a scattered subset so indices/mask reprs are exercised
        g = g.prune(keep_local=torch.arange(0, pm.input_dim, pm.input_dim // prune_to))
    return g


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _manual_rewrite(model, g, lr, ff):
    """theta + lr * Delta computed independently of ParamMap.scatter_add_."""
    W_d, b_d = g.model.decoder.weight.detach(), g.model.decoder.bias.detach()
    delta = (W_d @ torch.full((g.model.latent_dim,), float(ff)) + b_d).float()  # (P,) identity decoder act
    params = dict(model.named_parameters())
    expected = {}
    glob = g.param_map.local_to_global()
    for local, gi in enumerate(glob.tolist()):
        d = g.param_map.decode_global(gi)
        t = expected.setdefault(d["param"], params[d["param"]].detach().clone())
        t[d["coords"]] = t[d["coords"]] + lr * delta[local]
    return expected


@pytest.mark.parametrize("prune_to", [None, 200])
def test_rewrite_equals_theta_plus_lr_delta_and_leaves_original(mlm, prune_to):
    g = _gradiend(mlm, ["*.layer.1.attention.*", "bert.embeddings.LayerNorm.*"], prune_to=prune_to)
    before = _state(mlm)
    lr, ff = 0.37, -1.0
    new = g.rewrite(mlm, lr, ff)
    after = _state(mlm)
    assert all(torch.equal(before[k], after[k]) for k in before)  # original untouched
    expected = _manual_rewrite(mlm, g, lr, ff)
    new_params = dict(new.named_parameters())
    for name, p in mlm.named_parameters():
        if name in expected:
            assert torch.equal(new_params[name].detach(), expected[name]), name
            assert not torch.equal(new_params[name].detach(), p.detach())
        else:
            assert torch.equal(new_params[name].detach(), p.detach()), name


def test_delta_definitions(mlm):
    g = _gradiend(mlm, ["bert.embeddings.LayerNorm.*"], latent_dim=2)
    W, b = g.model.decoder.weight.detach(), g.model.decoder.bias.detach()
    assert torch.allclose(g.delta([1.0, -2.0]), W @ torch.tensor([1.0, -2.0]) + b)
    assert torch.allclose(g.delta(1.0), W.sum(1) + b)  # scalar ff fills every latent unit
    assert g.delta(1.0).dtype == torch.float32 and g.delta(1.0).shape == (g.param_map.input_dim,)
    assert torch.equal(g.delta(part="decoder-bias"), b)
    assert torch.allclose(g.delta(part="decoder-sum"), W.sum(1) + b)
    with pytest.raises(ConfigError):
        g.delta(part="decoder-weight")  # P*L values for L=2
    g1 = _gradiend(mlm, ["bert.embeddings.LayerNorm.*"])
    assert torch.equal(g1.delta(part="decoder-weight"), g1.model.decoder.weight.detach()[:, 0])


def test_applied_restores_bit_exactly(mlm):
    g = _gradiend(mlm, ["*.layer.0.*", "bert.embeddings.word_embeddings.weight"], prune_to=500)
    before = _state(mlm)
    expected = _manual_rewrite(mlm, g, 3.3, 1.0)
    with g.applied(mlm, 3.3, 1.0) as m:
        assert m is mlm
        params = dict(mlm.named_parameters())
        for name, t in expected.items():
            assert torch.equal(params[name].detach(), t)
    after = _state(mlm)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # restored even when the body raises
    with pytest.raises(RuntimeError):
        with g.applied(mlm, 100.0, -1.0):
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in _state(mlm).items())


def test_rewrite_changes_predictions_and_rejects_wrong_model(mlm):
    g = _gradiend(mlm, ["*.layer.1.output.*"])
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        base = mlm(input_ids=ids).logits
        moved = g.rewrite(mlm, 50.0, 1.0)(input_ids=ids).logits
    assert not torch.allclose(base, moved)
    other = tiny_mlm(seed=0, hidden=8)[0]
    with pytest.raises(ModelError, match="bert.encoder.layer.1.output"):
        g.rewrite(other, 1.0, 1.0)
    clm = tiny_clm(seed=0, hidden=16)[0]
    with pytest.raises(ModelError):
        g.rewrite(clm, 1.0, 1.0)


def test_topk_global_matches_brute_force_after_pruning(mlm):
    g = _gradiend(mlm, ["*.layer.1.*"], latent_dim=2, prune_to=300)
    glob = g.param_map.local_to_global()
    for part in ("encoder-weight", "decoder-weight", "decoder-bias", "decoder-sum"):
        imp = g.model.weight_importance(part)
        assert torch.equal(g.topk(part, 25), glob[torch.argsort(imp, descending=True)[:25]])


def test_prune_consistent_model_and_map(mlm):
    g = _gradiend(mlm, ["*.layer.1.*"], latent_dim=2)
    params = dict(mlm.named_parameters())
    x = g.param_map.gather(params)
    p1 = g.prune(topk=0.1)
    p2 = p1.prune(threshold=float(p1.model.weight_importance("decoder-weight").median()), topk=20)
    for pg in (p1, p2):
        assert pg.model.input_dim == pg.param_map.input_dim
        keep_global = pg.param_map.local_to_global()
        # g is unpruned, so its local index == base-global index: the kept columns/rows must line up
        assert torch.equal(pg.model.encoder.weight.detach(), g.model.encoder.weight.detach()[:, keep_global])
        assert torch.equal(pg.model.decoder.bias.detach(), g.model.decoder.bias.detach()[keep_global])
        assert torch.equal(pg.param_map.gather(params), x[keep_global])
    assert p2.model.input_dim == 20
    # the 20 kept dims are the top-20 of p1 among those above the median
    imp1 = p1.model.weight_importance("decoder-weight")
    top_expected = torch.argsort(imp1, descending=True)[:20].sort().values
    assert torch.equal(p2.param_map.local_to_global(), p1.param_map.local_to_global()[top_expected])
    assert p2.directions == g.directions and p2.training == g.training and p2.training is not g.training


def test_invert_flips_encoding_and_directions(mlm):
    g = _gradiend(mlm, ["*.layer.0.output.*"])
    x = torch.randn(3, g.param_map.input_dim)
    inv = g.invert()
    assert torch.equal(inv.encode(x), -g.encode(x))
    assert inv.directions == {"m": -1, "f": 1, "n": 0}
    assert g.invert(update_direction=False).directions == g.directions
    assert torch.equal(g.model.encoder.weight, -inv.model.encoder.weight)  # original not mutated
    assert torch.equal(inv.model.decoder.bias, -g.model.decoder.bias)
    # strengthening the same class gives the same Delta up to the bias sign flip: -W_d*ff' - b_d with ff' = -ff
    assert torch.allclose(inv.delta(inv.feature_factor("m")) + g.model.decoder.bias.detach() * 2,
                          g.delta(g.feature_factor("m")))


def test_feature_factor_rules(mlm):
    alt = _gradiend(mlm, ["bert.embeddings.LayerNorm.*"], source="alternative")
    fac = _gradiend(mlm, ["bert.embeddings.LayerNorm.*"], source="factual")
    dif = _gradiend(mlm, ["bert.embeddings.LayerNorm.*"], source="diff")
    assert (alt.feature_factor("m"), alt.feature_factor("f"), alt.feature_factor("n")) == (1.0, -1.0, 0.0)
    assert (fac.feature_factor("m"), fac.feature_factor("f")) == (-1.0, 1.0)
    assert dif.feature_factor("m") == -1.0
    assert alt.feature_factor("m", strengthen=False) == alt.feature_factor("f")
    assert fac.feature_factor("f", strengthen=False) == fac.feature_factor("m")
    with pytest.raises(ConfigError, match="known classes"):
        alt.feature_factor("x")


def test_mismatched_map_and_bad_source_rejected(mlm):
    pm = select_parameters(mlm, include=["bert.embeddings.LayerNorm.*"])
    with pytest.raises(ModelError):
        Gradiend(GradiendModel(pm.input_dim + 1), pm)
    with pytest.raises(ConfigError):
        Gradiend(GradiendModel(pm.input_dim), pm, source="counterfactual")
