import math

import pytest
import torch
from torch import nn

from gradiend_core.errors import ConfigError
from gradiend_core.model import ACTIVATIONS, GradiendModel, resolve_k


def test_reference_init_ranges_and_seed_does_not_touch_global_rng():
    P = 400
    state = torch.get_rng_state()
    m = GradiendModel(P, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    bound = 1 / math.sqrt(P)
    assert m.encoder.weight.abs().max() <= bound and m.encoder.bias.abs().max() <= bound
    top = float(m.encoder.weight.detach().max())
    assert m.decoder.weight.abs().max() <= top and m.decoder.bias.abs().max() <= top
    # the decoder spread is set by max(W_e) (~1/sqrt(P)), not by a default L->P init (U(-1, 1) for L=1)
    assert m.decoder.weight.abs().max() > 0.5 * top
    again = GradiendModel(P, seed=3)
    other = GradiendModel(P, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(m.decoder.weight, other.decoder.weight)


def test_forward_matches_formula_default_tanh_id():
    m = GradiendModel(20, seed=0)
    x = torch.randn(5, 20)
    x_hat, h = m(x)
    h_ref = torch.tanh(x @ m.encoder.weight.T + m.encoder.bias)
    assert torch.allclose(h, h_ref)
    assert torch.allclose(x_hat, h_ref @ m.decoder.weight.T + m.decoder.bias)
    assert torch.allclose(m.encode(x), h) and torch.allclose(m.decode(h), x_hat)
    # unbatched input keeps unbatched shapes
    xu_hat, hu = m(x[0])
    assert hu.shape == (1,) and torch.allclose(xu_hat, x_hat[0])
    # a scalar latent code is broadcast; decode(ff) = ff * W_d + b_d
    assert torch.allclose(m.decode(-2.0), -2.0 * m.decoder.weight[:, 0] + m.decoder.bias)


@pytest.mark.parametrize("name,fn", [
    ("relu", torch.relu), ("leakyrelu", lambda z: nn.functional.leaky_relu(z, 0.01)), ("tanh", torch.tanh),
    ("smht", nn.functional.hardtanh), ("elu", nn.functional.elu), ("gelu", nn.functional.gelu),
    ("sigmoid", torch.sigmoid), ("silu", nn.functional.silu), ("id", lambda z: z),
])
def test_activations_honoured_with_latent_dim_3(name, fn):
    m = GradiendModel(12, latent_dim=3, activation_encoder=name, activation_decoder=name, seed=1)
    x = torch.randn(4, 12) * 3
    x_hat, h = m(x)
    pre = x @ m.encoder.weight.T + m.encoder.bias
    assert h.shape == (4, 3)
    assert torch.allclose(h, fn(pre), atol=1e-6)
    assert torch.allclose(x_hat, fn(h @ m.decoder.weight.T + m.decoder.bias), atol=1e-6)


def test_identity_encoder_is_real_identity():
    m = GradiendModel(10, latent_dim=4, activation_encoder="id", seed=0)
    assert isinstance(m.act_enc, nn.Identity)
    assert len(m.state_dict()) == 4  # no LayerNorm parameters
    x = torch.randn(3, 10)
    h = m.encode(x)
    assert torch.allclose(h, x @ m.encoder.weight.T + m.encoder.bias)
    assert h.std() > 0  # not a constant


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        GradiendModel(5, activation_encoder="swish2")
    for name in ACTIVATIONS:
        assert name in str(e.value)
    assert GradiendModel(5, activation_encoder="Identity").activation_encoder == "id"


def test_no_decoder_bias():
    m = GradiendModel(6, bias_decoder=False, seed=0)
    assert m.decoder.bias is None
    assert torch.equal(m.weight_importance("decoder-bias"), torch.zeros(6))
    assert torch.allclose(m.decode(1.5), 1.5 * m.decoder.weight[:, 0])


def _brute_importance(m, part):
    We, Wd = m.encoder.weight.detach(), m.decoder.weight.detach()
    b = m.decoder.bias.detach()
    return {
        "encoder-weight": We.abs().sum(0), "decoder-weight": Wd.abs().sum(1),
        "decoder-bias": b.abs(), "decoder-sum": (Wd.sum(1) + b).abs(),
    }[part]


@pytest.mark.parametrize("part", ["encoder-weight", "decoder-weight", "decoder-bias", "decoder-sum"])
def test_importance_and_topk_match_brute_force(part):
    m = GradiendModel(50, latent_dim=2, seed=7)
    imp = _brute_importance(m, part)
    assert torch.allclose(m.weight_importance(part), imp)
    order = torch.argsort(imp, descending=True)
    assert torch.equal(m.topk_local(part, 7), order[:7])
    assert torch.equal(m.topk_local(part, 0.1), order[:5])  # ceil(0.1 * 50)
    assert torch.equal(m.topk_local(part, 0.001), order[:1])  # clipped to >= 1
    assert torch.equal(m.topk_local(part, 500), order)  # clipped to P


def test_topk_ties_keep_lowest_index():
    m = GradiendModel(6, seed=0)
    imp = torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0, 2.0])
    assert m.topk_local("decoder-weight", 3, importance=imp).tolist() == [1, 3, 2]


def test_resolve_k_rules():
    assert resolve_k(3, 10) == 3 and resolve_k(30, 10) == 10
    assert resolve_k(0.25, 10) == 3 and resolve_k(1.0, 10) == 10
    for bad in (-1, 0.0, 1.5, True):
        with pytest.raises(ConfigError):
            resolve_k(bad, 10)


def test_update_vectors():
    m = GradiendModel(8, latent_dim=2, seed=2)
    assert torch.equal(m.update_vector("decoder-weight"), m.decoder.weight.detach().reshape(-1))
    assert torch.equal(m.update_vector("decoder-bias"), m.decoder.bias.detach())
    assert torch.allclose(m.update_vector("decoder-sum"), m.decoder.weight.detach().sum(1) + m.decoder.bias.detach())
    assert torch.equal(m.update_vector("encoder-weight"), m.encoder.weight.detach().reshape(-1))
    with pytest.raises(ConfigError):
        m.update_vector("decoder-weights")


def test_keep_mask_order_mask_then_threshold_then_topk():
    m = GradiendModel(8, seed=0)
    imp = torch.tensor([0.9, 0.1, 0.8, 0.7, 0.05, 0.6, 0.95, 0.3])
    mask = torch.tensor([True, True, True, True, True, True, False, True])
    # mask drops 6 (the largest); threshold 0.2 drops 1, 4; top-2 of the rest = {0, 2}
    assert m.keep_mask(mask=mask, threshold=0.2, topk=2, importance=imp).tolist() == [0, 2]
    # float top-k is a fraction of the survivors: ceil(0.5 * 5) = 3 -> {0, 2, 3}
    assert m.keep_mask(mask=mask, threshold=0.2, topk=0.5, importance=imp).tolist() == [0, 2, 3]
    # top-k first would have kept 6: the order matters
    assert 6 not in m.keep_mask(mask=mask, topk=1, importance=imp).tolist()
    assert m.keep_mask(threshold=0.75, importance=imp).tolist() == [0, 2, 6]
    assert m.keep_mask(topk=1.0, importance=imp).tolist() == list(range(8))  # float 1.0 = no-op


def test_select_inputs_shrinks_physically_and_preserves_function():
    m = GradiendModel(30, latent_dim=2, seed=5)
    keep = torch.tensor([1, 4, 9, 20])
    small = m.select_inputs(keep)
    assert small.input_dim == 4 and small.encoder.weight.shape == (2, 4) and small.decoder.weight.shape == (4, 2)
    x = torch.zeros(30)
    x[keep] = torch.randn(4)
    x_hat, h = m(x)
    xs_hat, hs = small(x[keep])
    assert torch.allclose(h, hs, atol=1e-6) and torch.allclose(x_hat[keep], xs_hat, atol=1e-6)
    with pytest.raises(ConfigError):
        m.select_inputs(torch.tensor([3, 1]))
    with pytest.raises(ConfigError):
        m.select_inputs(torch.tensor([], dtype=torch.long))


def test_invert_flips_encoding_exactly_and_negates_weights():
    m = GradiendModel(16, latent_dim=2, seed=9)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(4, 16)
    h = m.encode(x).detach()
    m.invert_()
    for k, v in m.state_dict().items():
        assert torch.equal(v, -before[k])
    assert torch.equal(m.encode(x).detach(), -h)  # tanh is odd: exact


def test_bad_dims_rejected():
    for bad in (0, -1, 2.0):
        with pytest.raises(ConfigError):
            GradiendModel(bad)
        with pytest.raises(ConfigError):
            GradiendModel(4, latent_dim=bad)
    with pytest.raises(ConfigError):
        GradiendModel(4).encode(torch.zeros(5))


def test_one_input_dim_with_a_negative_encoder_weight_initialises():
    """pre_prune.topk: 1 keeps one dim; seed 0's only encoder weight is negative, where the reference's
    decoder range U(-max W_e, max W_e) is empty (training failed with a torch error after extraction)."""
    from gradiend_core.model import GradiendModel

    m = GradiendModel(1, 1, seed=0)
    w = float(m.encoder.weight.detach())
    assert w < 0 and abs(float(m.decoder.weight.detach())) <= abs(w) and abs(float(m.decoder.bias.detach())) <= abs(w)
