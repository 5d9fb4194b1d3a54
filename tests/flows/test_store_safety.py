"""The store commands never delete what is not theirs and never report what did not happen: a catalogue of
store mistakes (each answered with exit 2, one stderr line naming the fix, nothing changed), gc on read-only
and busy stores, a read-only store that only shows cached results, and disk full during extraction (the
finished rows are kept, the next run resumes to the same bytes).

Read-only stores and full disks are real mounts (a read-only bind mount: root ignores permissions; a small
tmpfs); the tests that need them skip, saying so, where mounting is not allowed."""
import contextlib
import subprocess
from pathlib import Path

import pytest
import yaml

from flows.cli import main
from gradiend_core import extraction as xg
from gradiend_core.experiment import load_experiment
from gradiend_core.io import human_bytes
from gradiend_core.stages import plan as stage_plan
from gradiend_core.stages.runner import run_stage
from gradiend_core.store import LocalStore
from gradiend_core.store.marker import MARKER
from gradiend_core.testing import tiny_experiment


def snapshot(root: Path) -> dict:
    """Every path below root (root itself if a file) with its size and mtime."""
    paths = [root] if root.is_file() else sorted(root.rglob("*")) if root.exists() else []
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in paths}


def write(out, conf, inputs, progress, paths):
    (out / "f.txt").write_text(f"output {conf}")
    return {}


def demo_store(root: Path, n: int = 2) -> list[str]:
    """A store written by the library alone (no marker, as every store made before markers): n outputs."""
    return [run_stage(LocalStore(root), "demo", "1", {"i": i}, {}, write)["key"] for i in range(n)]


def project(root: Path) -> Path:
    """A directory that is no store: a project with a package and data."""
    for rel in ("src/pkg/mod.py", "data/raw/x.csv", "README.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("mine")
    return root


def a_file(p: Path) -> Path:
    p.write_text("not a store")
    return p


# id -> (make the --store path from tmp_path, argv before --store ({cfg}: the tiny experiment), error text)
CASES = {
    "gc-not-a-store": (lambda t: project(t / "proj"), ["gc"], "is not a gradiend-flow store"),
    "gc-dry-run-not-a-store": (lambda t: project(t / "proj"), ["gc", "--dry-run"], "is not a gradiend-flow store"),
    "verify-not-a-store": (lambda t: project(t / "proj"), ["verify"], "is not a gradiend-flow store"),
    "status-not-a-store": (lambda t: project(t / "proj"), ["status", "{cfg}"], "is not a gradiend-flow store"),
    "show-not-a-store": (lambda t: project(t / "proj"), ["show", "ab"], "is not a gradiend-flow store"),
    "gc-store-is-a-file": (lambda t: a_file(t / "f"), ["gc"], "is a file, not a store directory"),
    "verify-store-is-a-file": (lambda t: a_file(t / "f"), ["verify"], "is a file, not a store directory"),
    "status-store-is-a-file": (lambda t: a_file(t / "f"), ["status", "{cfg}"], "is a file, not a store directory"),
    "show-store-is-a-file": (lambda t: a_file(t / "f"), ["show", "ab"], "is a file, not a store directory"),
    "verify-store-missing": (lambda t: t / "nope", ["verify"], "store {store} does not exist; pass --store"),
    "gc-store-missing": (lambda t: t / "nope", ["gc"], "does not exist; pass --store"),
    "verify-empty-dir": (lambda t: (t / "empty").mkdir() or t / "empty", ["verify"], "is empty: not a gradiend-flow"),
    "show-unknown-key": (lambda t: demo_store(t / "s") and t / "s", ["show", "fff"], "no output with key 'fff'"),
    "run-into-a-project": (lambda t: project(t / "proj"), ["run", "{cfg}"],
                           "is not empty and not a gradiend-flow store (no .gradiend-store and no stage outputs"),
    "run-store-is-a-file": (lambda t: a_file(t / "f"), ["run", "{cfg}"], "is a file, not a directory"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_store_mistake(case, tmp_path, tiny_config, capsys):
    make, argv, needle = CASES[case]
    store = make(tmp_path)
    before = snapshot(store)
    argv = [a.replace("{cfg}", str(tiny_config)) for a in argv] + ["--store", str(store)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    needle = needle.replace("{store}", str(store))
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert snapshot(store) == before  # nothing deleted, nothing written (not even a marker)


def test_url_prefix_that_is_no_store_is_refused(tmp_path, capsys):
    proj = project(tmp_path / "proj")
    before = snapshot(proj)
    for argv in (["gc"], ["verify"]):
        assert main([*argv, "--store", proj.as_uri(), "--cache", str(tmp_path / "cache")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{proj.as_uri()} is not a gradiend-flow store" in err[0], err
    assert snapshot(proj) == before


def test_store_before_markers_is_recognised_and_marked_by_gc(tmp_path, capsys):
    store = tmp_path / "s"
    keys = demo_store(store)
    assert not (store / MARKER).exists()
    assert main(["verify", "--store", str(store)]) == 0
    assert "2 outputs checked, 0 corrupted" in capsys.readouterr().out
    (store / "notes").mkdir()  # a user's own directory in the store: not an output (its name is no key)
    (store / "notes" / "todo").mkdir()
    assert main(["gc", "--store", str(store)]) == 0
    assert "2 directories removed" in capsys.readouterr().out
    assert (store / MARKER).is_file() and (store / "notes" / "todo").is_dir()
    assert not any((store / "demo" / k).exists() for k in keys)


def test_gc_leaves_what_a_running_build_holds(tmp_path, capsys):
    store = tmp_path / "s"
    done = demo_store(store, 1)[0]
    s = LocalStore(store)
    with s.lock("demo", "a" * 20):  # a build of key aaaa... in progress: its staging dir is in use
        staging = s.staging("demo", "a" * 20)
        (staging / "half.bin").write_bytes(b"x")
        assert main(["gc", "--store", str(store)]) == 1
        out = capsys.readouterr().out
    assert f"could not remove {staging}: {staging} is in use by a running build of demo/{'a' * 20}" in out
    assert f"removed {s.path('demo', done)}" in out and "1 directory removed, 1 could not be removed" in out
    assert (staging / "half.bin").exists() and not s.path("demo", done).exists()
    assert main(["gc", "--store", str(store)]) == 0  # the build is gone (its lock with it): now a leftover
    assert not staging.exists()


@contextlib.contextmanager
def mounted(*args: str, target: Path):
    """`mount ARGS target` for the block; skip the test where mounting is not allowed."""
    r = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount here (mount {' '.join(args)}: {r.stderr.strip()}); needs root in a "
                    f"namespace that allows mounts")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@contextlib.contextmanager
def read_only(d: Path):
    """d as a read-only bind mount of itself (root ignores permission bits, not a read-only mount)."""
    with mounted("--bind", str(d), target=d):
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(d)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot remount read-only here: {r.stderr.strip()}")
        yield d


def test_gc_on_a_read_only_store(tmp_path, capsys):
    store = tmp_path / "s"
    demo_store(store)
    s = LocalStore(store)
    with s.lock("demo", "b" * 20):
        leftover = s.staging("demo", "b" * 20)  # a killed run's staging dir (its lock is released below)
    run_stage(s, "other", "1", {}, {}, write)
    before = snapshot(store)
    with read_only(store):  # the whole store read-only: refused up front, one line, nothing removed
        assert main(["gc", "--store", str(store)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is not writable (Read-only file system)" in err[0] and "gc removed nothing" in err[0]
        assert snapshot(store) == before
    with read_only(store / "demo"):  # one stage directory read-only: the rest is removed, each failure reported
        assert main(["gc", "--store", str(store)]) == 1
        out = capsys.readouterr().out.strip().splitlines()
    failed = [line for line in out if line.startswith("could not remove")]
    assert len(failed) == 3 and all("Read-only file system" in line for line in failed)
    assert any(line.startswith(f"could not remove {leftover}: Read-only file system") for line in failed)
    assert out[-1] == "1 directory removed, 3 could not be removed (see above)"
    assert not list((store / "other").iterdir()) and len(list((store / "demo").iterdir())) == 3


@pytest.fixture
def cached_store(tmp_path, tiny_config) -> Path:
    """A store holding every stage output of the tiny experiment (built without Prefect)."""
    store = tmp_path / "cached"
    stage_plan.run_plan(LocalStore(store), stage_plan.plan(load_experiment(tiny_config)))
    return store


def test_read_only_store_shows_cached_results_and_refuses_new_work(cached_store, tiny_config, run_json, capsys,
                                                                   prefect_home):
    before = snapshot(cached_store)
    with read_only(cached_store):
        summary = run_json(tiny_config, cached_store)
        assert all(st["cached"] for st in summary["stages"].values())
        assert main(["run", str(tiny_config), "--store", str(cached_store), "--set", "train.learning_rate=5e-4"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: store {cached_store} is not writable (Read-only file system)")
    assert "stage outputs are not in it yet (first: train-seed-0)" in err[-1]
    assert snapshot(cached_store) == before


@pytest.fixture
def experiment(tmp_path, tiny_model_dir) -> Path:
    exp = tiny_experiment(tiny_model_dir)
    exp["extract"]["batch_size"] = 4  # 18 row blocks
    exp["train"]["max_seeds"] = 1
    p = tmp_path / "x.yaml"
    p.write_text(yaml.safe_dump(exp))
    return p


def test_disk_full_during_extraction_keeps_the_rows_and_resumes(experiment, tmp_path, capsys, monkeypatch,
                                                                prefect_home):
    """Another process fills the disk while the third row block is extracted (a real ENOSPC on a tmpfs)."""
    clean = stage_plan.run_plan(LocalStore(tmp_path / "clean"), stage_plan.plan(load_experiment(experiment)),
                                until="extract-gradients")["extract-gradients"]
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted("-t", "tmpfs", "-o", "size=24m", "tmpfs", target=disk):
        store, filler = disk / "store", disk / "filler"
        recorded = xg.write_progress

        def write_progress(out, n, dim, done, *a):
            recorded(out, n, dim, done, *a)
            if len(done) == 2 and not filler.exists():  # fill the disk: the next block cannot be written
                with open(filler, "wb") as f, contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * 2**20)
                        f.flush()

        monkeypatch.setattr(xg, "write_progress", write_progress)
        assert main(["run", str(experiment), "--store", str(store)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: the disk filled up during extraction (")
        need = human_bytes(xg.bytes_needed(64, clean["info"]["dim"], "float16"))
        assert f"the 8 of 72 rows extracted are kept, the other 64 need up to {need} more; free that much and " \
               "run again, it resumes" in err[-1] and not [line for line in err if "Traceback" in line]
        [staging] = LocalStore(store).leftover_staging("extract-gradients", clean["key"])
        assert xg.read_progress(staging, 72, clean["info"]["dim"]) == {0, 4}
        monkeypatch.undo()

        filler.unlink()  # space again: the next run extracts only the 16 remaining blocks
        extracted = []
        original = xg.extract_block
        monkeypatch.setattr(xg, "extract_block", lambda e, block, *a: extracted.append(len(block)) or
                            original(e, block, *a))
        m = stage_plan.run_plan(LocalStore(store), stage_plan.plan(load_experiment(experiment)),
                                until="extract-gradients")["extract-gradients"]
        assert not m["cached"] and sum(extracted) == 72 - 8
        assert {r: f["sha256"] for r, f in m["files"].items()} == {r: f["sha256"] for r, f in clean["files"].items()}
        assert LocalStore(store).leftovers() == []
