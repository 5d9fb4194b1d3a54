"""`gradiend-flow`: run the pipeline, see what is cached, inspect outputs, verify and clean the store.

  gradiend-flow run [CONFIG] [--store DIR] [--set section.key=value ...] [--json]
  gradiend-flow status [CONFIG] [--store DIR] [--set ...]
  gradiend-flow show KEY [--store DIR]
  gradiend-flow verify [--store DIR]
  gradiend-flow gc [CONFIG ...] [--store DIR] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import env

DEFAULT_STORE = "store"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gradiend-flow", description="GRADIEND as a cached Prefect pipeline.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, config=True):
        if config:
            sp.add_argument("config", nargs="?", help="experiment YAML (default: the embedded default)")
            sp.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                            help="override one setting (repeatable)")
        sp.add_argument("--store", default=DEFAULT_STORE, help=f"artifact store directory (default: ./{DEFAULT_STORE})")

    r = sub.add_parser("run", help="run (or reuse) every stage")
    common(r)
    r.add_argument("--json", action="store_true", help="print a JSON summary as the last stdout line")
    common(sub.add_parser("status", help="which stages of an experiment are cached"))
    s = sub.add_parser("show", help="print the manifest of an output (key or unique prefix)")
    s.add_argument("key")
    common(s, config=False)
    common(sub.add_parser("verify", help="check every output's files against its manifest"), config=False)
    g = sub.add_parser("gc", help="remove leftovers of killed runs and outputs no given experiment uses")
    g.add_argument("configs", nargs="*", help="experiments whose outputs to keep (default: the embedded default)")
    g.add_argument("--dry-run", action="store_true")
    common(g, config=False)
    return p


def main(argv: list[str] | None = None) -> int:
    env.apply()
    args = _parser().parse_args(argv)
    from gradiend_core.errors import GradiendError

    try:
        return {"run": cmd_run, "status": cmd_status, "show": cmd_show, "verify": cmd_verify,
                "gc": cmd_gc}[args.cmd](args)
    except GradiendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def cmd_run(args) -> int:
    from .api import resolve_config, run_experiment

    cfg = resolve_config(args.config, args.set)
    result = run_experiment(cfg, args.store)  # preflight first: bad input fails before any stage
    s = result.summary
    print(render_summary(s))
    if args.json:
        print(json.dumps(s, sort_keys=True))
    return 0


def render_summary(s: dict) -> str:
    lines = [f"{'stage':<22} {'key':<22} {'status':<9} seconds"]
    for sid, st in s["stages"].items():
        lines.append(f"{sid:<22} {st['key']:<22} {'cached' if st['cached'] else 'ran':<9} {st['seconds']:.1f}")
    m = s["metrics"]
    sel = m["selected"]
    lines += [
        "",
        f"encoder correlation ({m['encoder_split']} split): {m['encoder_correlation']:.3f}   best seed: "
        f"{m['best_seed']} ({m['converged_seeds']} converged)",
        f"rewrite ({m['direction']} {m['target_class']}): value {sel['base_value']:.4f} -> {sel['value']:.4f}, "
        f"LMS {sel['base_lms']:.4f} -> {sel['lms']:.4f} (feature factor {sel['feature_factor']:g}, "
        f"lr {sel['learning_rate']:g})",
        f"rewritten model: {s['rewritten_model']}",
        f"store: {s['store']}   total {s['seconds']:.1f}s",
    ]
    return "\n".join(lines)


def cmd_status(args) -> int:
    from gradiend_core.cas import ArtifactStore

    from .api import resolve_config
    from gradiend_core.stages.plan import plan

    cfg = resolve_config(args.config, args.set)
    store = ArtifactStore(Path(args.store))
    for sid, p in plan(cfg).items():
        problems = store.problems(p.stage, p.key)
        state = "cached" if not problems else ("missing" if store.manifest(p.stage, p.key) is None else "broken")
        print(f"{sid:<22} {p.key:<22} {state}")
    return 0


def cmd_show(args) -> int:
    from gradiend_core.cas import ArtifactStore

    store = ArtifactStore(Path(args.store))
    stage, key = store.find(args.key)
    print(json.dumps(store.load(stage, key), indent=2, sort_keys=True))
    return 0


def cmd_verify(args) -> int:
    from gradiend_core.cas import ArtifactStore

    store = ArtifactStore(Path(args.store))
    bad = 0
    n = 0
    for stage, key in store.outputs():
        n += 1
        problems = store.problems(stage, key, deep=True)
        if problems:
            bad += 1
            for p in problems:
                print(f"CORRUPT {p}")
    print(f"{n} outputs checked, {bad} corrupted or incomplete")
    return 1 if bad else 0


def cmd_gc(args) -> int:
    import shutil

    from gradiend_core.cas import ArtifactStore
    from gradiend_core.stages.plan import plan

    from .api import resolve_config

    store = ArtifactStore(Path(args.store))
    keep = set()
    for c in (args.configs or [None]):
        keep |= {(p.stage, p.key) for p in plan(resolve_config(c)).values()}
    doomed = [store.path(s, k) for s, k in store.outputs() if (s, k) not in keep] + store.leftovers()
    for d in doomed:
        print(("would remove " if args.dry_run else "removed ") + str(d))
        if not args.dry_run:
            shutil.rmtree(d, ignore_errors=True)
    print(f"{len(doomed)} director{'y' if len(doomed) == 1 else 'ies'} {'to remove' if args.dry_run else 'removed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
