"""Pre-pruning before extraction: the kept dims are the top |mean source gradient| of the sampled rows
(computed here independently), and the store holds exactly those dims of every row's gradients."""
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from gradiend_core.experiment import load_experiment
from gradiend_core.grad_store import GradientStore, dequantize, quantize
from gradiend_core.manifests import load_prepared_model, out_path, store_dir
from gradiend_core.stages.plan import plan, run_plan
from gradiend_core.testing import save_tiny, tiny_experiment, tiny_mlm
from gradiend_core.store import LocalStore


def run_until(config: Path, store: Path, stop_at: str) -> dict:
    return run_plan(LocalStore(store), plan(load_experiment(config)), until=stop_at)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from gradiend_core.data.builtin import builtin_vocabulary

    d = tmp_path_factory.mktemp("prune")
    return save_tiny(*tiny_mlm(seed=0, hidden=32, layers=2, words=builtin_vocabulary()), d / "tiny-bert")


def config(tmp: Path, model_dir: Path, **pre_prune) -> Path:
    exp = tiny_experiment(model_dir)
    exp["pre_prune"].update(pre_prune)
    # one row per pass: a row's stored bytes then do not depend on which rows shared its padded batch,
    # so the independent recomputation below (row by row) can be compared bit for bit
    exp["extract"]["micro_batch_size"] = 1
    p = tmp / "tiny.yaml"
    p.write_text(yaml.safe_dump(exp))
    return p


def full_gradients(done: dict, rows: pd.DataFrame):
    """Factual and alternative gradients of `rows` over the whole (unpruned) selection, fp32."""
    from gradiend_core.experiment import ExtractSection
    from gradiend_core.gradients import GradientExtractor
    from gradiend_core.param_map import select_parameters

    x = ExtractSection(**done["extract-gradients"]["record"]["config"]["extract"]) \
        if "record" in done["extract-gradients"] else None
    x = x or ExtractSection(**done["extract-gradients"]["config"]["extract"])
    base = load_prepared_model(done["prepare-model"])
    ex = GradientExtractor(base, select_parameters(base.model, x.include, x.exclude))
    pairs = [ex.pair_gradients([m], [f], [a]) for m, f, a in zip(rows["masked"], rows["factual"], rows["alternative"])]
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def test_store_holds_the_top_dims_of_the_sampled_mean_gradient(tmp_path, model_dir):
    from safetensors.torch import load_file

    done = run_until(config(tmp_path, model_dir, source="alternative", topk=0.25), tmp_path / "store", "pre-prune")
    ext, pre = done["extract-gradients"], done["pre-prune"]
    rows = pd.read_parquet(out_path(ext) / "rows.parquet")
    sample = ext["info"]["pre_prune"]["sample_rows"]
    assert len(sample) == 4 and set(rows.set_index("store_row").loc[sample, "split"]) == {"train"}

    g_f, g_a = full_gradients(done, rows.set_index("store_row").loc[sample])
    importance = g_a.double().mean(0).abs()                                   # (P,) here: row by row
    k = -(-importance.numel() // 4)                                           # ceil(0.25 P)
    keep = load_file(str(out_path(ext) / "keep.safetensors"))["keep"]
    assert keep.numel() == k and torch.equal(keep, torch.unique(keep))        # sorted, distinct
    # the stage sums the rows inside one backward (float32), here they are summed afterwards: every dim
    # clearly above the k-th importance is kept and every dim clearly below it is not; only dims within
    # float32 rounding of the cut may go either way
    cut = torch.sort(importance, descending=True).values[k - 1]
    band = 1e-5 * float(importance.max())
    kept = torch.zeros_like(importance, dtype=torch.bool)
    kept[keep] = True
    assert bool(kept[importance > cut + band].all()) and not bool(kept[importance < cut - band].any())

    store = GradientStore(store_dir(pre))
    assert store_dir(pre) == out_path(ext) and store.dim == k == ext["info"]["dim"] == pre["info"]["dim"]
    test_rows = rows[rows["split"] == "test"].head(3)
    f_all, a_all = full_gradients(done, test_rows)
    idx = list(test_rows["store_row"])
    for kind, g in (("factual", f_all), ("alternative", a_all)):  # float16, each row scaled (grad_store)
        torch.testing.assert_close(store.rows(kind, idx), dequantize(*quantize(g[:, keep], "float16"), "float16"),
                                   rtol=0, atol=0)
    assert sum(pre["info"]["kept_per_param"].values()) == k
    assert load_file(str(out_path(pre) / "keep.safetensors"))["keep"].equal(keep)


def test_disabled_stores_every_dim(tmp_path, model_dir):
    done = run_until(config(tmp_path, model_dir, enabled=False), tmp_path / "store", "pre-prune")
    ext, pre = done["extract-gradients"], done["pre-prune"]
    assert ext["info"]["pre_prune"] is None and pre["info"]["pruned"] is False
    assert GradientStore(store_dir(pre)).dim == ext["info"]["dim"] == pre["info"]["dim"]
    assert not (out_path(ext) / "keep.safetensors").exists()


def test_pre_prune_settings_are_in_the_extraction_key_only_when_enabled(tmp_path, model_dir):
    keys = {}
    for name, pp in {"on": {}, "topk": {"topk": 0.5}, "off": {"enabled": False},
                     "off-topk": {"enabled": False, "topk": 0.5}}.items():
        (tmp_path / name).mkdir()
        keys[name] = plan(load_experiment(config(tmp_path / name, model_dir, **pp)))["extract-gradients"].key
    assert keys["on"] != keys["topk"] and keys["on"] != keys["off"]
    assert keys["off"] == keys["off-topk"]  # an unused setting never invalidates the store


@pytest.mark.parametrize("written, kept", [("3", 3), ("1", 1), ("1.0", "all")])
def test_an_int_topk_is_a_count_and_a_float_a_fraction(tmp_path, model_dir, written, kept):
    """`topk: 1` keeps one dim (it was read as the fraction 1.0 and kept every dim), `topk: 1.0` keeps all,
    `topk: 3` three (it was refused as a fraction > 1); the YAML number's type decides."""
    p = config(tmp_path, model_dir)
    p.write_text(p.read_text().replace("topk: 0.25", f"topk: {written}"))
    done = run_until(p, tmp_path / "store", "pre-prune")
    ext, pre = done["extract-gradients"], done["pre-prune"]
    dim = GradientStore(store_dir(pre)).dim
    assert dim == pre["info"]["dim"] == sum(pre["info"]["kept_per_param"].values())
    assert dim == (ext["info"]["pre_prune"]["unpruned_dim"] if kept == "all" else kept)
