"""Each bench script's --smoke mode, run as a subprocess: one JSON object on stdout with the documented keys.

The scripts start together (they are mostly process start-up and tiny models) so the file stays
within a few minutes on two cores. Marked `bench`: not in the default suite (`make test`); `make bench-smoke`
runs it, and CI runs both.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "compare-reference": ["bench/compare_reference.py", "--ref-venv", "/nonexistent/ref-venv"],
    "compare-reference-suite": ["bench/compare_reference_suite.py", "--ref-venv", "/nonexistent/ref-venv"],
    "extraction-limit": ["bench/extraction_limit.py", "--profile"],
    "cache-reuse": ["bench/cache_reuse.py"],
    "scaling": ["bench/scaling.py"],
    "decoder-policies": ["bench/decoder_policies.py"],
    "gpu": ["bench/gpu.py"],                            # skipped without CUDA: the skip JSON
    "gpu-on-cpu": ["bench/gpu.py", "--device", "cpu"],  # every measurement of it, run on the CPU
    "stored-precision": ["bench/stored_precision.py"],
    "suite-extraction": ["bench/suite_extraction.py"],
}
TIMEOUT = 420  # the six run side by side on two cores (~140 s alone on a quiet machine)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    procs = {}
    for name, argv in SCRIPTS.items():
        wd = tmp_path_factory.mktemp(name)
        env_i = dict(env, PREFECT_HOME=str(wd / "prefect-home"))
        procs[name] = subprocess.Popen([sys.executable, *argv, "--smoke", "--workdir", str(wd / "work")],
                                       cwd=ROOT, env=env_i, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    results = {}
    for name, p in procs.items():
        try:
            out, err = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        results[name] = {"rc": p.returncode, "stdout": out, "stderr": err}
    return results


def parsed(outputs: dict, name: str, bench: str | None = None) -> dict:
    r = outputs[name]
    assert r["rc"] == 0, f"{name} --smoke failed (rc={r['rc']}):\n{r['stderr'][-3000:]}"
    lines = [ln for ln in r["stdout"].splitlines() if ln.strip()]
    assert len(lines) == 1, f"{name} must print exactly one line on stdout, got {len(lines)}"
    obj = json.loads(lines[0])
    assert obj["bench"] == (bench or name) and obj["smoke"] is True
    return obj


def test_compare_reference_smoke(outputs):
    o = parsed(outputs, "compare-reference")
    assert o["reference"]["status"] == "skipped" and "/nonexistent/ref-venv" in o["reference"]["reason"]
    ours = o["ours"]
    assert ours["status"] == "ok" and ours["wall_seconds"] > 0 and ours["peak_rss_mib"] > 0
    assert ours["disk_bytes"] > 0
    assert -1.0 <= ours["encoder"]["correlation"] <= 1.0
    assert set(ours["selected"]) >= {"feature_factor", "learning_rate", "value", "lms", "base_lms"}
    # setup (model + data) ran before, so the timed run found both cached and ran everything else
    assert {"prepare-model", "create-data"} <= set(ours["cached"])
    assert "extract-gradients" in ours["ran"] and "decoder-grid" in ours["ran"]
    assert set(o["setup"]) == {"prepare-model", "create-data", "prefect-database"}
    # Prefect's database was created in setup: the timed run's PREFECT_HOME already had it
    assert o["setup"]["prefect-database"]["disk_bytes"] > 0
    assert o["same_work"]["experiment"]["train"]["max_seeds"] == 1


def test_compare_reference_suite_smoke(outputs):
    o = parsed(outputs, "compare-reference-suite")
    assert o["reference"]["status"] == "skipped" and "/nonexistent/ref-venv" in o["reference"]["reason"]
    assert "agreement" not in o and "speedup" not in o  # nothing to compare against
    w = o["same_work"]
    assert w["classes"] == ["1SG", "3SG", "3PL"] and w["pairs"] == ["1SG|3SG", "1SG|3PL", "3PL|3SG"]
    assert w["steps"] == w["experiment"]["train"]["max_steps"] and w["experiment"]["train"]["max_seeds"] == 1
    assert w["rows_per_class"] == w["experiment"]["data"]["max_per_class"]
    ours = o["ours"]
    assert ours["status"] == "ok" and ours["wall_seconds"] > 0 and ours["peak_rss_mib"] > 0
    assert {"prepare-model", "create-data"} <= set(ours["cached"]) and "compare" in ours["ran"]
    assert set(ours["encoder_correlation"]) == set(w["pairs"])
    assert all(-1.0 <= c <= 1.0 for c in ours["encoder_correlation"].values())
    assert set(ours["similarity"]) == set(w["measures"]) == {"cosine", "spearman", "topk_overlap", "mass_overlap"}
    for m, matrix in ours["similarity"].items():
        assert set(matrix) == set(w["pairs"]) and all(set(row) == set(w["pairs"]) for row in matrix.values())
        for a in w["pairs"]:
            assert matrix[a][a] == pytest.approx(1.0)  # a GRADIEND against itself
            assert all(matrix[a][b] == matrix[b][a] and 0.0 <= matrix[a][b] <= 1.0 for b in w["pairs"])


def test_extraction_limit_smoke(outputs):
    o = parsed(outputs, "extraction-limit")
    assert o["rows"] == 8 and o["forward_backward_passes"] == 16
    assert o["rows_per_s"] > 0 and o["tokens_per_s"] > 0 and o["matmul_gflops"] > 0
    # the implied FLOP rate is 6 * N * tokens / seconds, and the fraction is its ratio to the matmul rate
    assert o["achieved_gflops"] == pytest.approx(6 * o["params_matmul"] * o["tokens"] / o["seconds"] / 1e9,
                                                 rel=0.02, abs=2e-3)
    assert o["fraction_of_limit"] == pytest.approx(o["achieved_gflops"] / o["matmul_gflops"], rel=0.05, abs=1e-3)
    assert o["fraction_of_all_cores_rate"] == pytest.approx(o["achieved_gflops"] / o["matmul_gflops_all_cores"],
                                                            rel=0.05, abs=1e-3)
    assert o["meets_target"] == (min(o["fraction_of_limit"], o["fraction_of_all_cores_rate"]) >= 0.30)
    assert 0 < o["params_matmul"] < o["params_total"]
    # --profile: the heaviest ops, and the whole profiled time split into named parts
    assert o["profile_top_ops"] and {"op", "self_cpu_ms", "calls", "share"} <= set(o["profile_top_ops"][0])
    assert sum(o["profile_split"].values()) == pytest.approx(1.0, abs=1e-3)
    assert o["profile_split"]["transformer_matmuls"] > 0 and o["profile_split"]["lm_head_matmuls"] > 0


def test_cache_reuse_smoke(outputs):
    o = parsed(outputs, "cache-reuse")
    assert "extract-gradients" in o["cold"]["ran"]
    runs = o["reruns"]
    grid = runs["decoder_grid.learning_rates"]
    assert set(grid["ran"]) == {"decoder-grid", "rewrite-3SG-strengthen"}
    assert "extract-gradients" in grid["cached"] and 0 < grid["fraction_of_cold"]
    lr = runs["train.learning_rate"]
    assert any(s.startswith("train-seed") for s in lr["ran"]) and "extract-gradients" in lr["cached"]
    assert "pre-prune" in runs["pre_prune.topk"]["ran"]
    assert o["unchanged"]["ran"] == []
    assert set(o["targets"]) == {"decoder_grid.learning_rates", "train.learning_rate"}


def test_scaling_smoke(outputs):
    o = parsed(outputs, "scaling")
    small, large = (o["by_rows"][str(n)] for n in o["rows"])
    assert large["extract-gradients"]["n_rows"] > small["extract-gradients"]["n_rows"]
    for sid in ("extract-gradients", "pre-prune"):
        assert small[sid]["peak_rss_mib"] > 0 and small[sid]["disk_bytes"] > 0
    # more rows store more gradients
    assert large["extract-gradients"]["disk_bytes"] > small["extract-gradients"]["disk_bytes"]
    assert large["prepare-model"].get("shared") is True  # one model output serves every row count
    assert set(o["targets"]["peak_rss_flat_in_rows"]) == {"extract-gradients", "pre-prune"}
    # smallest model first (the JSON's keys are sorted by name)
    models = sorted(o["by_model"].values(), key=lambda m: m["prepare-model"]["n_parameters"])
    assert len(models) == 2
    assert models[1]["extract-gradients"]["dim"] > models[0]["extract-gradients"]["dim"]
    n = [m["prepare-model"]["n_parameters"] for m in models]
    assert 0 < n[0] < n[1]
    fit = o["memory_model"]["stages"]["extract-gradients"]  # peak RSS = a + b * parameters through both
    for m, params in zip(models, n):
        want = fit["a_mib"] + fit["b_bytes_per_param"] / 2**20 * params
        assert m["extract-gradients"]["peak_rss_mib"] == pytest.approx(want, abs=0.2)


def test_decoder_policies_smoke(outputs):
    o = parsed(outputs, "decoder-policies")
    (exp,) = o["experiments"]
    assert exp["heldout_rows"] > 0 and exp["heldout_texts"] > 0 and exp["n_lms_positions"] > 0
    variants = {s["variant"] for s in exp["selections"]}
    assert variants == set(o["variants"]) and {"threshold (reference)", "significance"} <= variants
    for s in exp["selections"]:
        assert {"effect", "lms_accuracy", "lms_log_prob"} <= set(s["heldout"])
        assert s["heldout"]["effect"]["lo"] <= s["heldout"]["effect"]["change"] <= s["heldout"]["effect"]["hi"]
    assert set(o["aggregate"]["all_metrics"]) == set(o["variants"])


def test_gpu_smoke(outputs):
    import torch

    o = parsed(outputs, "gpu")
    if not torch.cuda.is_available():
        assert o["status"] == "skipped" and "no CUDA device" in o["skipped"] and "extraction" not in o
        return
    assert o["status"] == "ok" and o["device_name"] and o["peak_gpu_mib"] > 0
    _check_gpu_bench(o)


def test_gpu_bench_measurements_on_the_cpu(outputs):
    o = parsed(outputs, "gpu-on-cpu", bench="gpu")
    assert o["status"] == "ok" and (o["device"], o["device_name"]) == ("cpu", "cpu")
    _check_gpu_bench(o)


def _check_gpu_bench(o: dict) -> None:
    assert set(o["extraction"]) == {"float32", "bfloat16"}
    for x in o["extraction"].values():
        assert x["rows"] == 8 and x["rows_per_s"] > 0 and x["rows_finite"] is True
        assert x["fraction_of_matmul_rate"] == pytest.approx(x["achieved_gflops"] / x["matmul_gflops"], rel=0.05,
                                                             abs=1e-3)
        assert 0 < x["stored_dims"] < x["backbone_dims"]
    t = o["training"]
    assert t["steps"] == 10 and t["steps_per_s"] > 0 and t["loss_finite"] is True
    assert t["dim"] == o["extraction"]["float32"]["stored_dims"] and t["fraction_of_matmul_rate"] > 0


def test_stored_precision_smoke(outputs):
    o = parsed(outputs, "stored-precision")
    assert o["rows"] == 8 and set(o["widths"]) == {"full", "pre_pruned"}
    assert o["widths"]["pre_pruned"]["dim"] < o["widths"]["full"]["dim"]
    for w in o["widths"].values():
        f16, row, store, bf16 = (w[f] for f in ("float16", "float16_row_scaled", "float16_block_scaled", "bfloat16"))
        assert store["rows"] == 2 * o["rows"]  # factual and alternative
        assert store["rel_err_max"] <= 2.0 ** -11  # float16 rounding, nothing lost to the range
        assert store["flushed_frac"] <= row["flushed_frac"] <= f16["flushed_frac"]
        assert store["subnormal_frac"] <= f16["subnormal_frac"]
        assert store["rel_err_median"] < bf16["rel_err_median"]  # 11 significant bits vs 8
        assert store["zero_frac"] >= store["zero_frac_float32"]


def test_suite_extraction_smoke(outputs):
    o = parsed(outputs, "suite-extraction")
    assert o["pairs"] == 3 and o["identical"] is True  # one pass writes the bytes of each pair's own build
    assert o["shared"]["rows_computed"] == o["rows"] and o["one_by_one"]["rows_computed"] == 3 * o["rows"]
    d = o["dims"]
    assert max(d["per_pair"].values()) < d["union"] <= d["sum"] == sum(d["per_pair"].values())
    assert o["speedup"] == pytest.approx(o["one_by_one"]["seconds"] / o["shared"]["seconds"], rel=0.01)
