"""The original library's side of compare-reference-suite. Runs ONLY under bench/.ref-venv's python
(gradiend==0.2.3 installed there); the project never imports the original library.

    bench/.ref-venv/bin/python bench/reference_suite_runner.py JOB.json

JOB.json (written by compare_reference_suite.py): model_dir, training (CSV, the reference's merged
format), neutral (CSV, column text), experiment_dir, classes, threads, the training settings, measures
({measure: part}) and topk. Runs a SymmetricTrainerSuite over every unordered pair of the classes:
train(), evaluate_encoder(split="test"), then compute_similarity_matrix per measure. Prints one JSON
object: step wall times, peak RSS, each pair's encoder correlation and every similarity matrix, the
GRADIENDs named by their two classes sorted and joined by "|".
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

from reference_runner import _version, log, start


def suite_of(job: dict, data, neutral):
    from gradiend import PrePruneConfig, SymmetricTrainerSuite, TextPredictionTrainer, TrainingArguments

    pre = job.get("pre_prune")
    args = TrainingArguments(
        experiment_dir=job["experiment_dir"], use_cache=False, source=job["source"], target=job["target"],
        train_batch_size=job["batch_size"], max_steps=job["max_steps"], eval_steps=job["eval_steps"],
        learning_rate=job["learning_rate"], seed=job["seed"], max_seeds=job["max_seeds"],
        min_convergent_seeds=1, encoder_eval_max_size=job["encoder_eval_max_size"],
        pre_prune_config=PrePruneConfig(n_samples=pre["n_samples"], topk=pre["topk"], source=pre["source"])
        if pre else None,
    )
    return SymmetricTrainerSuite(TextPredictionTrainer, model=job["model_dir"], data=data,
                                 target_classes=list(job["classes"]), args=args, eval_neutral_data=neutral,
                                 split_col="split")


def names_of(suite) -> dict[str, str]:
    """child id -> its two classes sorted, joined by "|" (the benchmark's GRADIEND names)."""
    return {cid: "|".join(sorted(suite.get_pair_definition(cid).target_classes)) for cid in suite.keys()}


def as_named(payload: dict, names: dict[str, str]) -> dict[str, dict]:
    """A compute_similarity_matrix payload as {row name: {col name: value}}."""
    ids = [names.get(str(i), str(i)) for i in payload["model_ids"]]
    mat = payload["matrix"]
    if hasattr(mat, "values") and hasattr(mat, "columns"):  # a DataFrame
        mat = mat.values
    rows = [[None if v is None or v != v else round(float(v), 6) for v in row] for row in mat]
    return {r: dict(zip(ids, row)) for r, row in zip(ids, rows)}


def correlation(result) -> float | None:
    v = result.get("correlation") if isinstance(result, dict) else None
    return None if v is None else float(v)


def main(job_path: str) -> dict:
    job, t_start, data, neutral = start(job_path)
    import torch

    seconds: dict[str, float] = {"imports": time.perf_counter() - t_start}
    suite = suite_of(job, data, neutral)
    names = names_of(suite)
    for step, call in (("train", lambda: suite.train()),
                       ("evaluate_encoder", lambda: suite.evaluate_encoder(
                           split="test", max_size=job["encoder_eval_max_size"]))):
        t = time.perf_counter()
        log(f"{step}() of {len(names)} pairs")
        result = call()
        seconds[step] = time.perf_counter() - t
    encoder = {names[cid]: correlation(r) for cid, r in result.items()}
    similarity = {}
    for measure, part in job["measures"].items():
        t = time.perf_counter()
        log(f"compute_similarity_matrix({measure})")
        kw = {"topk": job["topk"]} if measure in ("topk_overlap", "mass_overlap") else {}
        similarity[measure] = as_named(suite.compute_similarity_matrix(measure=measure, part=part, **kw), names)
        seconds[f"similarity_{measure}"] = time.perf_counter() - t
    return {"status": "ok", "gradiend_version": _version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "pairs": sorted(names.values()), "child_ids": names,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "total_seconds": round(time.perf_counter() - t_start, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "encoder_correlation": encoder, "similarity": similarity}


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(json.dumps(main(sys.argv[1]), default=str), flush=True)
