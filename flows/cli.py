"""`gradiend-flow`: run the pipeline, see what is cached, inspect outputs, verify and clean the store.

  gradiend-flow run [CONFIG] [--store DIR|URL] [--set section.key=value ...] [--json]
  gradiend-flow status [CONFIG] [--store DIR|URL] [--set ...]
  gradiend-flow show KEY [--store DIR|URL]
  gradiend-flow verify [--store DIR|URL]
  gradiend-flow gc [CONFIG ...] [--store DIR|URL] [--dry-run]

--store takes a directory or an fsspec URL (file:///shared/store, s3://bucket/prefix, ...); with a URL,
this host keeps local copies under --cache (default $GRADIEND_FLOW_CACHE, else ~/.cache/gradiend-flow).
"""
from __future__ import annotations

import argparse
import json
import os
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
        sp.add_argument("--store", default=DEFAULT_STORE,
                        help=f"artifact store: a directory or an fsspec URL such as s3://bucket/prefix "
                             f"(default: ./{DEFAULT_STORE})")
        sp.add_argument("--cache", default=None, metavar="DIR",
                        help="this host's copies of a URL store's outputs (default: $GRADIEND_FLOW_CACHE, "
                             "else ~/.cache/gradiend-flow)")

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

    if args.cache:  # for this process and the local workers it starts
        from gradiend_core.store import ENV_CACHE

        os.environ[ENV_CACHE] = str(Path(args.cache).expanduser().resolve())

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
    from .api import run_experiment
    from .interrupt import Interrupted, exit_code, run_stoppable

    def at_once(signum: int):  # a second Ctrl-C or SIGTERM: outputs are published atomically, nothing to finish
        print(f"stopped at once by a second {signal_name(signum)}: finished outputs stay in the store; "
              f"run the same command again to resume", file=sys.stderr)
        hard_exit(exit_code(signum))

    # run_experiment starts Prefect's temporary API first, then reads the config (which imports torch) while
    # it comes up, then checks everything (bad input fails before any stage), then runs the flow
    try:
        result = run_stoppable(lambda: run_experiment(args.config, args.store, overrides=args.set), at_once)
    except Interrupted as e:
        print(stopped_line(args, e.signum), file=sys.stderr)
        return exit_code(e.signum)
    s = result.summary
    print(render_summary(s))
    if args.json:
        print(json.dumps(s, sort_keys=True))
    return 0


def signal_name(signum: int) -> str:
    from .interrupt import name

    return name(signum)


def stopped_line(args, signum: int) -> str:
    """The one line a run stopped by a signal ends with: what the store holds, and that the next run resumes."""
    from gradiend_core import stop
    from gradiend_core.stages.registry import BY_NAME

    partial = [f"{label} keeps its finished work (it was at: {msg})" for label, msg in sorted(stop.stopped_at().items())
               if getattr(BY_NAME.get(label.split()[0]), "resumable", False)]
    try:
        from gradiend_core.stages.plan import plan
        from gradiend_core.store import open_store

        from .api import resolve_config

        steps, store = plan(resolve_config(args.config, args.set)), open_store(args.store)
        done = sum(store.status(p.stage, p.key) == "cached" for p in steps.values())
        kept = f"{done} of {len(steps)} outputs of this run are in the store {store.location}"
    except Exception:  # (a store or config that failed before the stop: the run reported it)
        kept = "finished outputs stay in the store"
    return f"stopped by {signal_name(signum)}: {'; '.join([kept] + partial)}; run the same command again to resume"


def hard_exit(code: int):
    """End the process now (the store is safe for that: outputs are published atomically), stopping the local
    API server without waiting for it (it would also stop by itself: flows/api_server.py)."""
    from . import local_api

    api = local_api.current()
    if api is not None:
        api.stop(wait=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def render_summary(s: dict) -> str:
    lines = [f"{'stage':<24} {'key':<22} {'status':<9} seconds"]
    for sid, st in s["stages"].items():
        lines.append(f"{sid:<24} {st['key']:<22} {'cached' if st['cached'] else 'ran':<9} {st['seconds']:.1f}")
        for sh in st.get("shards", []):  # extract-gradients split into row shards (runner.extract_shards)
            lines.append(f"  shard {sh['shard']:<16} {str(sh['rows']) + ' rows':<22} {'ran':<9} {sh['seconds']:.1f}")
    if "pairs" in s:  # a suite
        return "\n".join(lines + suite_lines(s) + warning_lines(s))
    m = s["metrics"]
    lines += [
        "",
        f"encoder correlation ({m['encoder_split']} split): {m['encoder_correlation']:.3f}   best seed: "
        f"{m['best_seed']} ({m['converged_seeds']} converged)",
    ]
    for r in s.get("rewrites", []):
        lines += rewrite_lines(r)
    lines.append(f"store: {s['store']}   total {s['seconds']:.1f}s")
    return "\n".join(lines + warning_lines(s))


def warning_lines(s: dict) -> list[str]:
    """The steps' warnings, last, where they are seen."""
    return [f"WARNING {w}" for w in s.get("warnings", [])]


def suite_lines(s: dict) -> list[str]:
    """A suite's headline: each pair's encoder correlation and best seed, then where the comparison is."""
    lines = ["", f"{'pair':<24} {'encoder correlation':<24} best seed"]
    for pid, m in s["pairs"].items():
        lines.append(f"{pid:<24} {m['encoder_correlation']:<24.3f} {m['best_seed']} ({m['converged_seeds']} converged)")
    for r in s.get("rewrites", []):
        lines += rewrite_lines(r)
    c = s["comparison"]
    lines += [f"comparison ({', '.join(c['tables'])}): {c['dir']}", f"store: {s['store']}   total {s['seconds']:.1f}s"]
    return lines


def rewrite_lines(r: dict) -> list[str]:
    """One rewritten model: the metric before -> after with the change's interval, the LMS likewise, the
    selected cell, and the model directory."""
    sel = r["selected"]

    def ci(v, lo, hi):
        return "" if sel.get(v) is None else f" ({sel[v]:+.3g} [{sel[lo]:+.3g}, {sel[hi]:+.3g}])"

    c = r["class"]
    metric = f"P({c}) on other-class rows" if r["direction"] == "strengthen" else f"1 - P({c}) on {c} rows"
    return [f"rewrite ({r['direction']} {r['class']}): {metric} {sel['base_value']:.4f} -> {sel['value']:.4f}"
            f"{ci('change', 'change_lo', 'change_hi')}, LMS {sel['base_lms']:.4g} -> {sel['lms']:.4g}"
            f"{ci('lms_diff', 'lms_diff_lo', 'lms_diff_hi')} (feature factor {sel['feature_factor']:g}, "
            f"lr {sel['learning_rate']:g})",
            f"  rewritten model: {r['model']}"]


def cmd_status(args) -> int:
    from gradiend_core.stages.plan import plan
    from gradiend_core.store import open_store

    from .api import resolve_config

    cfg = resolve_config(args.config, args.set)
    store = open_store(args.store)  # a URL store: its manifests and listing only, nothing is downloaded
    store.check_store()
    for sid, p in plan(cfg).items():
        report = f"   report {store.status(p.decl.report_stage, p.report_key)}" if p.report_key else ""
        print(f"{sid:<22} {p.key:<22} {store.status(p.stage, p.key):<8}{report}")
    return 0


def cmd_show(args) -> int:
    from gradiend_core.store import open_store

    store = open_store(args.store)
    store.check_store()
    stage, key = store.find(args.key)
    m = store.manifest(stage, key)
    if m is None:
        from gradiend_core.errors import StoreError

        raise StoreError(f"{stage}/{key} in {store.location} has no manifest (a killed or broken build); "
                         f"re-run the flow, or `gradiend-flow gc` to drop it")
    print(json.dumps({**m, "path": store.where(stage, key)}, indent=2, sort_keys=True))
    return 0


def cmd_verify(args) -> int:
    """Re-hash every file (a URL store: download every file again into this host's cache)."""
    from gradiend_core.store import open_store

    store = open_store(args.store)
    store.check_store()
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
    """Remove what no listed experiment uses and what killed runs left; report each directory removed or
    not (and why), exit 1 when one could not be removed."""
    from gradiend_core.errors import GradiendError
    from gradiend_core.stages.plan import plan
    from gradiend_core.store import open_store

    from .api import resolve_config

    store = open_store(args.store)
    store.check_store()  # never deletes from a directory that is not a store
    keep = set()
    for c in (args.configs or [None]):
        for p in plan(resolve_config(c)).values():
            keep |= {(p.stage, p.key)} | ({(p.decl.report_stage, p.report_key)} if p.report_key else set())
    outputs = [(s, k) for s, k in store.outputs() if (s, k) not in keep]
    leftovers = store.leftovers()
    if args.dry_run:
        doomed = [store.where(s, k) for s, k in outputs] + [str(p) for p in leftovers]
        for d in doomed:
            print(f"would remove {d}")
        print(f"{len(doomed)} director{'y' if len(doomed) == 1 else 'ies'} to remove")
        return 0
    try:  # a read-only store: one line, nothing removed (and a store made before markers gets its marker)
        store.check_writable()
    except GradiendError as e:
        raise type(e)(f"{e} (gc removed nothing)") from None
    jobs = [(store.where(s, k), lambda s=s, k=k: store.remove(s, k)) for s, k in outputs]
    jobs += [(str(p), lambda p=p: store.remove_leftover(p)) for p in leftovers]
    removed, failed = 0, 0
    for where, remove in jobs:
        why = _try(remove)
        if why is None:
            removed += 1
            print(f"removed {where}")
        else:
            failed += 1
            print(f"could not remove {where}: {why}")
    print(f"{removed} director{'y' if removed == 1 else 'ies'} removed"
          + (f", {failed} could not be removed (see above)" if failed else ""))
    return 1 if failed else 0


def _try(fn) -> str | None:
    """None when fn() succeeded, else why not (one line)."""
    from gradiend_core.errors import StoreError

    try:
        fn()
    except StoreError as e:
        return str(e)
    except OSError as e:
        return f"{e.strerror} ({e.filename})" if e.filename else str(e)
    return None


def entry() -> None:
    """The `gradiend-flow` command: main(), then a fast exit.

    With torch, transformers and Prefect imported, the interpreter's own teardown of those modules
    takes ~1.6 s after the last output (measured here), with nothing of ours left to release: every
    output is already published atomically. So after main() the exit steps that matter run (Prefect's
    log flush, stopping the local API server), the standard streams are flushed, and the process ends.
    """
    import atexit
    import threading

    rc = main()
    # the interpreter's own exit steps, in its order: threading's (its exit callbacks, where Prefect
    # drains its log and event senders, and joining non-daemon threads), then the atexit handlers
    shutdown_threads = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if shutdown_threads is None or run_exit_handlers is None:  # not CPython: the normal exit
        sys.exit(rc)
    shutdown_threads()
    run_exit_handlers()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    entry()
