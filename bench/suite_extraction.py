"""suite-extraction: a suite's extractions in one pass against its pairs extracted one by one.

    .venv/bin/python bench/suite_extraction.py [--smoke] [--config examples/person_number_suite.yaml]
                                               [--set KEY=VALUE ...] [--workdir DIR]

Plans the suite (default: the example suite, five classes, ten pairs), builds its model and data once,
then builds every pair's extract-gradients output twice in the same store, side by side in one run:

- `shared`: the suite's one-pass task (stages/extract_shared.py): each row block computed once over
  the union of the pairs' kept dims, each pair's columns written to its own store;
- `one_by_one`: the outputs removed, then each pair's step run alone (what a suite without sharing, or
  each pair as a single run, costs).

Reports the wall time of each and their ratio (and where the one pass spent its time: loading and every
pair's pre-pruning, computing gradients, scaling them per store, writing them on a thread, waiting for it), the rows whose gradients were computed, the stored and
union dims and the disk the stores take, and whether both ways wrote the same bytes (they must: same keys).
`--smoke`: a tiny model, three classes, three pairs.
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Workdir, dir_size, emit, log, machine, parse_common, tiny_model_dir, write_yaml  # noqa: E402

STAGE = "extract-gradients"


def experiment(args, work: Path) -> Path:
    import yaml

    from gradiend_core.testing import tiny_experiment

    if not args.smoke:
        return Path(args.config)
    exp = tiny_experiment(tiny_model_dir(work), name="bench-suite")
    exp["data"].update(classes={"3SG": ["he", "she"], "3PL": ["they"], "IT": ["it"]}, max_per_class=12)
    exp["suite"] = {"pairs": "all"}
    return write_yaml(yaml.safe_load(yaml.safe_dump(exp)), work / "suite.yaml")


def digests(store, members) -> dict:
    out = {}
    for p in members:
        root = store.path(STAGE, p.key)
        out[p.id] = {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
                     for f in sorted(root.rglob("*")) if f.is_file() and f.name != "manifest.json"}
    return out


def measure(args, work: Path) -> dict:
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages.plan import plan, run_plan, run_shared, run_step, shared_groups
    from gradiend_core.store import LocalStore

    cfg = load_experiment(experiment(args, work), args.set or [])
    steps, store = plan(cfg), LocalStore(work / "store")
    (members,) = shared_groups(steps).values()
    t0 = time.perf_counter()
    inputs = {n: run_plan(store, steps, until=i)[i] for n, i in members[0].inputs.items()}
    setup = time.perf_counter() - t0
    for p in members:  # a re-run of the bench starts from no extraction
        if store.manifest(STAGE, p.key) is not None:
            store.remove(STAGE, p.key)
    log(f"shared: {len(members)} pairs in one pass")
    t0 = time.perf_counter()
    record = run_shared(store, members, inputs, lambda f, m="": None)
    shared_s = time.perf_counter() - t0
    shared_bytes = {p.id: dir_size(store.path(STAGE, p.key)) for p in members}
    want = digests(store, members)
    infos = {p.id: store.load(STAGE, p.key)["info"] for p in members}
    one = {}
    for p in members:
        store.remove(STAGE, p.key)
    for p in members:
        log(f"one by one: {p.id}")
        t0 = time.perf_counter()
        run_step(store, p, inputs)
        one[p.id] = round(time.perf_counter() - t0, 2)
    n = infos[members[0].id]["n_rows"]
    return {"pairs": len(members), "rows": n, "setup_seconds": round(setup, 2),
            "shared": {"seconds": round(shared_s, 2), "rows_computed": record["rows_computed"],
                       "union_dim": record["union_dim"], "disk_bytes": sum(shared_bytes.values()),
                       "parts_seconds": record["parts_seconds"]},
            "one_by_one": {"seconds": round(sum(one.values()), 2), "rows_computed": n * len(members), "per_pair": one},
            "speedup": round(sum(one.values()) / shared_s, 2),
            "dims": {"per_pair": {pid: i["dim"] for pid, i in infos.items()},
                     "sum": sum(i["dim"] for i in infos.values()), "union": record["union_dim"]},
            "identical": digests(store, members) == want}


def main() -> None:
    args = parse_common(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--config", default=str(ROOT / "examples" / "person_number_suite.yaml")),
        p.add_argument("--set", action="append", help="KEY=VALUE overrides of the suite file")))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with Workdir(args.workdir) as work:
        out = measure(args, work)
    emit({"bench": "suite-extraction", "smoke": args.smoke, "config": None if args.smoke else args.config,
          "sets": args.set or [], **out, "machine": machine()})


if __name__ == "__main__":
    main()
