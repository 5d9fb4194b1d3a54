"""Devices and precision: the settings' checks, auto placement, the keys they (do not) change, the
GRADIEND split over two devices, and a whole bfloat16 run on the CPU."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from gradiend_core import devices
from gradiend_core.devices import (check_dtype, parse_device, place_model, resolve_decoder_device,
                                   resolve_device)
from gradiend_core.errors import ConfigError
from gradiend_core.experiment import load_experiment


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", " CPU "])
def test_device_spellings(spec):
    assert parse_device(spec, "model.device") == spec.strip().lower()


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cuda0", "", "tpu:0", None])
def test_unknown_device_strings(spec):
    with pytest.raises(ConfigError, match="model.device: unknown device .*; use auto, cpu, cuda, cuda:N or mps"):
        parse_device(spec, "model.device")


def _host(monkeypatch, gpus: int, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(devices, "_has_mps", lambda: mps)


@pytest.mark.parametrize("gpus, mps, auto", [(0, False, "cpu"), (0, True, "mps"), (1, True, "cuda:0"),
                                             (2, False, "cuda:0")])
def test_auto_is_cuda_then_mps_then_cpu(monkeypatch, gpus, mps, auto):
    _host(monkeypatch, gpus, mps)
    assert resolve_device("auto") == torch.device(auto)


def test_missing_devices_name_the_fix(monkeypatch):
    _host(monkeypatch, 1, False)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"cuda:3 requested but this host has 1 CUDA device\(s\) \(cuda:0..cuda:0\)"):
        resolve_device("cuda:3")
    with pytest.raises(ConfigError, match="train.device: mps is not available"):
        resolve_device("mps", "train.device")
    _host(monkeypatch, 0, False)
    with pytest.raises(ConfigError, match="cuda requested but CUDA is not available on this host"):
        resolve_device("cuda")


def test_decoder_device_follows_the_reference_split(monkeypatch):
    """None: the encoder's; auto: cuda:1 with 2 GPUs (the reference's wide-GRADIEND split), else the encoder's."""
    cpu, cuda0 = torch.device("cpu"), torch.device("cuda", 0)
    _host(monkeypatch, 2, False)
    assert resolve_decoder_device(cuda0, None) == cuda0
    assert resolve_decoder_device(cuda0, "auto") == torch.device("cuda", 1)
    assert resolve_decoder_device(torch.device("cuda", 1), "auto") == cuda0
    assert resolve_decoder_device(cpu, "auto") == cpu
    _host(monkeypatch, 1, False)
    assert resolve_decoder_device(cuda0, "auto") == cuda0
    with pytest.raises(ConfigError, match="train.decoder_device: cuda:1 requested but this host has 1"):
        resolve_decoder_device(cuda0, "cuda:1")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_torch_cpu_runs_every_dtype(dtype):
    """torch 2.13's CPU kernels run float16 and bfloat16 matmuls, layer norm and softmax backward."""
    check_dtype(torch.device("cpu"), dtype)


def test_place_model_is_a_no_op_for_cpu_float32_and_casts_otherwise():
    m = torch.nn.Linear(3, 2)
    w = m.weight
    assert place_model(m, torch.device("cpu")) is m and m.weight is w  # untouched: same tensor
    place_model(m, torch.device("cpu"), "bfloat16")
    assert m.weight.dtype == torch.bfloat16


# ----------------------------------------------------------------------------- keys

def _keys(*sets: str) -> dict[str, str]:
    from gradiend_core.stages.plan import plan

    return {sid: p.key for sid, p in plan(load_experiment(None, list(sets))).items()}


def test_devices_are_in_no_key_and_dtype_is_in_the_model_running_stages():
    """Decision (docs/ARCHITECTURE.md): a device changes the last bits only and an output is reused on any
    device; the dtype changes results, so it keys extraction, grid and rewrite (hence everything after
    extraction), not prepare-model or create-data. float32 keys are the keys from before the setting."""
    base = _keys()
    assert _keys("model.device=cpu", "train.device=cpu", "train.decoder_device=auto") == base
    bf16 = _keys("model.dtype=bfloat16")
    same = {sid for sid in base if bf16[sid] == base[sid]}
    assert same == {"prepare-model", "create-data"}
    assert _keys("model.dtype=float16")["extract-gradients"] not in (base["extract-gradients"],
                                                                     bf16["extract-gradients"])


def test_runtime_is_handed_to_the_build_but_not_hashed():
    from gradiend_core.stages.plan import plan
    from gradiend_core.stages.runner import RUNTIME, hashed

    steps = plan(load_experiment(None, ["model.device=cpu", "train.decoder_device=cpu", "model.dtype=bfloat16"]))
    assert steps["extract-gradients"].conf[RUNTIME] == {"device": "cpu"}
    assert steps["extract-gradients"].conf["model_dtype"] == "bfloat16"
    assert steps["train-seed-0"].conf[RUNTIME] == {"device": "cpu", "decoder_device": "cpu"}
    assert "device" not in hashed(steps["train-seed-0"].conf)["train"]
    assert "model_dtype" not in plan(load_experiment(None))["decoder-grid"].conf


# ----------------------------------------------------------------------------- GRADIEND split

def _train(decoder_device):
    from gradiend_core.training import EvalSet, TrainConfig, train_gradiend

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 40, generator=g)
    labels = torch.tensor([1.0, -1.0] * 8)
    batches = [(x[i:i + 4], x[i:i + 4] * 0.5) for i in range(0, 16, 4)]
    cfg = TrainConfig(learning_rate=1e-2, max_steps=8, eval_steps=4, device="cpu", decoder_device=decoder_device)
    return train_gradiend(batches, EvalSet(x, labels), 40, cfg, seed=3)


def test_split_over_two_devices_runs_the_cross_device_path():
    """Encoder and decoder placed separately (both on the CPU here): h and the target cross to the
    decoder's device; the run is the unsplit run, bit for bit, and the model comes back on the CPU."""
    one, two = _train(None), _train("cpu")
    assert two.device == "cpu" and two.model.decoder.weight.device.type == "cpu"
    for k, v in one.model.state_dict().items():
        assert torch.equal(v, two.model.state_dict()[k]), k
    assert one.stats["loss"] == two.stats["loss"]


def test_forward_moves_the_latent_code_to_the_decoder(monkeypatch):
    from gradiend_core.model import GradiendModel

    m = GradiendModel(6, seed=0).place(torch.device("cpu"), torch.device("cpu"))
    moved = []
    real = torch.Tensor.to

    def spy(t, *a, **k):
        moved.append(a[0] if a else k.get("device"))
        return real(t, *a, **k)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    x_hat, h = m(torch.ones(2, 6))
    assert x_hat.shape == (2, 6) and torch.device("cpu") in moved


# ----------------------------------------------------------------------------- bfloat16 run

@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.stages.plan import plan, run_plan
    from gradiend_core.store import LocalStore
    from gradiend_core.testing import save_tiny, tiny_experiment, tiny_mlm

    d = tmp_path_factory.mktemp("bf16")
    save_tiny(*tiny_mlm(seed=0, hidden=32, layers=2, words=builtin_vocabulary()), d / "model")
    exp = tiny_experiment(d / "model")
    exp["train"]["max_seeds"] = 1
    (d / "c.yaml").write_text(yaml.safe_dump(exp))
    store = LocalStore(d / "store")
    bf16 = load_experiment(d / "c.yaml", ["model.device=cpu", "model.dtype=bfloat16"])
    f32 = load_experiment(d / "c.yaml", ["model.device=cpu"])
    return run_plan(store, plan(bf16)), run_plan(store, plan(f32), until="extract-gradients")


def _stored(manifest) -> tuple[np.ndarray, np.ndarray]:
    """(first 8 factual rows (8, P'), the kept unpruned dims (P',)) of an extraction."""
    from safetensors.torch import load_file

    from gradiend_core.grad_store import GradientStore

    out = Path(manifest["path"])
    keep = load_file(str(out / "keep.safetensors"))["keep"].numpy()
    return GradientStore(out).rows("factual", list(range(8))).float().numpy(), keep


def test_a_bfloat16_run_on_the_cpu(bf16_run):
    from transformers import AutoModelForMaskedLM

    done, f32 = bf16_run
    ext = done["extract-gradients"]
    assert (ext["info"]["device"], ext["info"]["model_dtype"]) == ("cpu", "bfloat16")
    assert ext["runtime"] == {"device": "cpu"} and ext["config"]["model_dtype"] == "bfloat16"
    (rows, keep), (ref, ref_keep) = _stored(ext), _stored(f32["extract-gradients"])
    assert np.isfinite(rows).all() and np.abs(rows).sum() > 0
    common = np.intersect1d(keep, ref_keep)  # pre-pruning ranks the bfloat16 model's importance: ties move
    assert len(common) > 0.8 * len(keep)
    rows, ref = rows[:, np.searchsorted(keep, common)], ref[:, np.searchsorted(ref_keep, common)]
    assert not np.array_equal(rows, ref)  # the bfloat16 model's gradients, not the float32 model's
    err = np.linalg.norm(rows - ref, axis=1) / np.linalg.norm(ref, axis=1)  # (8,) bfloat16's rounding only
    assert (err < 0.1).all(), err
    assert done["train-seed-0"]["info"]["device"] == "cpu"
    grid = pd.read_parquet(Path(done["decoder-grid"]["path"]) / "grid.parquet")
    assert done["decoder-grid"]["info"]["model_dtype"] == "bfloat16"
    assert np.isfinite(grid["lms"]).all() and np.isfinite(done["decoder-grid"]["info"]["base_lms"])
    rw = done["rewrite-3SG-strengthen"]
    assert rw["info"]["model_dtype"] == "bfloat16"
    model = AutoModelForMaskedLM.from_pretrained(Path(rw["path"]) / "model")  # saved in the chosen dtype
    assert next(model.parameters()).dtype == torch.bfloat16
    assert all(torch.isfinite(p.float()).all() for p in model.parameters())


# ----------------------------------------------------------------------------- on CUDA (a GPU host only)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bench/gpu_check.sh runs these)")


@cuda
def test_gradients_on_cuda_come_back_on_the_cpu_close_to_the_cpu_rows():
    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.gradients import GradientExtractor
    from gradiend_core.lm import BaseLM, weights_digest
    from gradiend_core.param_map import select_parameters
    from gradiend_core.testing import tiny_mlm

    model, tok = tiny_mlm(seed=0, words=builtin_vocabulary())
    rows = (["[MASK] walked home .", "then [MASK] sat down ."], ["he", "they"], ["they", "he"])
    out = {}
    for dev in ("cpu", "cuda"):
        base = BaseLM(model, tok, "mlm", "tiny", weights_digest(model))
        place_model(base.model, torch.device(dev))
        out[dev] = GradientExtractor(base, select_parameters(base.model)).pair_gradients(*rows)
    for c, g in zip(out["cpu"], out["cuda"]):
        assert g.device.type == "cpu" and g.dtype == torch.float32
        assert torch.allclose(c, g, rtol=1e-3, atol=1e-5)


@cuda
def test_training_on_cuda_with_the_decoder_split_auto():
    from gradiend_core.training import EvalSet, TrainConfig, train_gradiend

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 40, generator=g)
    batches = [(x[i:i + 4], x[i:i + 4] * 0.5) for i in range(0, 16, 4)]
    cfg = TrainConfig(learning_rate=1e-2, max_steps=8, eval_steps=4, device="cuda", decoder_device="auto")
    r = train_gradiend(batches, EvalSet(x, torch.tensor([1.0, -1.0] * 8)), 40, cfg, seed=3)
    assert r.device.startswith("cuda:0") and r.model.encoder.weight.device.type == "cpu"
    ref = _train(None)
    assert torch.allclose(r.model.decoder.weight, ref.model.decoder.weight, atol=1e-4)
