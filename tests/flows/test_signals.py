"""Stopping `gradiend-flow run` with real signals, as a terminal or a supervisor sends them: the first Ctrl-C
(SIGINT to the process group) or SIGTERM stops it at the next safe point with one line and exit 130 / 143,
a second stops it at once; no process it started survives it, even SIGKILLed; the next run resumes and
ends with the same bytes as a run never stopped (flows/interrupt.py, gradiend_core/stop.py,
flows/api_server.py)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gradiend_core.testing import tiny_experiment

ROOT = Path(__file__).resolve().parents[2]
BOUND_S = 20  # exit after a stop (the stage's next safe point is < 1 s away; a slow shared machine)

# five CLI processes with their API servers (~1-4 min): `make test-extended`, which CI runs after `make test`
pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the process tree"),
              pytest.mark.extended]


def proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, state) of every process (/proc/PID/stat)."""
    table = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                text = (d / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            rest = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ... starttime (22nd field)
            table[int(d.name)] = (int(rest[1]), rest[19], rest[0])
    return table


def descendants(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below `pid` now."""
    table, found, todo = proc_table(), set(), [pid]
    while todo:
        parent = todo.pop()
        for p, (ppid, start, _) in table.items():
            if ppid == parent:
                found.add((p, start))
                todo.append(p)
    return found


def survivors(seen: set[tuple[int, str]]) -> list[str]:
    """The command lines of the processes in `seen` that still run (same pid and start time, not a zombie)."""
    table = proc_table()
    alive = [p for p, start in seen if p in table and table[p][1] == start and table[p][2] != "Z"]
    out = []
    for p in alive:
        try:
            out.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
        except OSError:
            pass
    return out


class Run:
    """`gradiend-flow run CONFIG --store STORE --json` in a session of its own, its output in files."""

    def __init__(self, config: Path, store: Path, home: Path, log: Path):
        self.err_path, self.out_path = log.with_suffix(".err"), log.with_suffix(".out")
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO"}
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.p = subprocess.Popen([sys.executable, "-m", "flows.cli", "run", str(config), "--store", str(store),
                                       "--json"], cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
        self.seen: set[tuple[int, str]] = set()

    def wait_for(self, condition, timeout: float = 240) -> None:
        """Poll condition() (recording the processes the run started) until it holds."""
        t0 = time.monotonic()
        while not condition():
            self.seen |= descendants(self.p.pid)
            assert self.p.poll() is None, f"the run ended first: {self.stderr()[-1500:]}"
            assert time.monotonic() - t0 < timeout, f"timed out: {self.stderr()[-1500:]}"
            time.sleep(0.05)
        self.seen |= descendants(self.p.pid)

    def signal_and_time(self, *signals: tuple[int, bool]) -> tuple[int, float]:
        """Send each (signal, to the whole process group?) 0.3 s apart (each its own delivery: the run takes
        longer to stop); (exit status, seconds to exit)."""
        t0 = time.monotonic()
        for i, (sig, group) in enumerate(signals):
            if i:
                time.sleep(0.3)
            os.killpg(self.p.pid, sig) if group else os.kill(self.p.pid, sig)
        try:
            code = self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.p.pid, signal.SIGKILL)
            raise
        return code, time.monotonic() - t0

    def stderr(self) -> str:
        return self.err_path.read_text()

    def server_answers(self) -> bool:
        """The temporary API server this run started (flows/api_server.py) answers."""
        import urllib.request

        for pid, _ in descendants(self.p.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if "flows.api_server" in " ".join(argv):
                try:
                    url = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}/api/health"
                    with urllib.request.urlopen(url, timeout=0.5) as r:
                        return r.status == 200
                except OSError:
                    return False
        return False


def extracted_blocks(store: Path) -> int:
    """Row blocks extraction has recorded as written in its staging dir (0 before it starts)."""
    for f in (store / "extract-gradients").glob(".staging-*/progress.json"):
        try:
            return len(json.loads(f.read_text())["done"])
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def digests(store: Path) -> dict:
    from gradiend_core.store import LocalStore

    s = LocalStore(store)
    return {(st, k, rel): f["sha256"] for st, k in s.outputs() for rel, f in s.manifest(st, k)["files"].items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    """A tiny experiment whose extraction (94 rows in 24 blocks) outlasts three stops, and the digests of
    its uninterrupted run with its plots (in this process, without Prefect)."""
    from gradiend_core.experiment import load_experiment
    from gradiend_core.stages import plan as stage_plan
    from gradiend_core.store import LocalStore

    d = tmp_path_factory.mktemp("signals")
    e = tiny_experiment(tiny_model_dir)
    e["data"]["max_per_class"] = 40
    e["extract"]["batch_size"] = 4
    config = d / "tiny.yaml"
    config.write_text(yaml.safe_dump(e))
    stage_plan.run_plan(LocalStore(d / "reference"), stage_plan.plan(load_experiment(config)), reports=True)
    return config, d, digests(d / "reference")


def test_stopped_runs_resume_and_end_with_the_bytes_of_an_uninterrupted_run(setup):
    config, d, reference = setup
    store, home = d / "store", d / "home"

    # 1. Ctrl-C (SIGINT to the process group) during extraction: stops at the next row block
    run = Run(config, store, home, d / "run1")
    run.wait_for(lambda: extracted_blocks(store) >= 1)
    code, seconds = run.signal_and_time((signal.SIGINT, True))
    err = run.stderr()
    assert code == 130 and seconds < BOUND_S, (code, seconds, err[-2000:])
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGINT: 2 of 10 outputs of this run are in the store"), err[-2000:]
    assert "extract-gradients keeps its finished work" in last and last.endswith("run the same command again to resume")
    assert "Traceback" not in err and "Crash detected" not in err
    assert not survivors(run.seen)  # the API server (its own session: no Ctrl-C) was stopped by the run
    kept = extracted_blocks(store)
    assert kept >= 1 and not run.out_path.read_text()

    # 2. SIGTERM to the process alone (as a supervisor sends it) while the next run resumes extraction
    run = Run(config, store, home, d / "run2")
    run.wait_for(lambda: extracted_blocks(store) > kept)
    code, seconds = run.signal_and_time((signal.SIGTERM, False))
    err = run.stderr()
    assert code == 143 and seconds < BOUND_S, (code, seconds, err[-2000:])
    assert "resuming the staging dir of a killed run" in err
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM: 2 of 10 outputs"), err[-2000:]
    assert "Traceback" not in err and not survivors(run.seen)
    kept2 = extracted_blocks(store)
    assert kept2 > kept

    # 3. Ctrl-C twice: the second stops at once, without waiting for a safe point
    run = Run(config, store, home, d / "run3")
    run.wait_for(lambda: extracted_blocks(store) > kept2)
    code, seconds = run.signal_and_time((signal.SIGINT, True), (signal.SIGINT, True))
    err = run.stderr()
    assert code == 130 and seconds < BOUND_S, (code, seconds, err[-2000:])
    assert err.strip().splitlines()[-1].startswith("stopped at once by a second SIGINT"), err[-2000:]
    assert "Traceback" not in err
    time.sleep(1)  # the server was asked to stop, not waited for
    assert not survivors(run.seen)

    # 4. the next run resumes and finishes: every file of every output as an uninterrupted run's
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(config), "--store", str(store), "--json"],
                          cwd=ROOT, env={**os.environ, "PREFECT_HOME": str(home)}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming the staging dir of a killed run" in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["stages"]["extract-gradients"]["cached"] is False
    assert digests(store) == reference


def test_a_sigkilled_run_leaves_no_api_server(setup, tmp_path):
    config, d, _ = setup
    run = Run(config, tmp_path / "store", d / "home", tmp_path / "run")
    run.wait_for(run.server_answers)
    assert run.seen
    code, _ = run.signal_and_time((signal.SIGKILL, False))  # the CLI alone: nothing of it can clean up
    assert code == -signal.SIGKILL
    t0 = time.monotonic()
    while survivors(run.seen) and time.monotonic() - t0 < 15:
        time.sleep(0.1)
    assert not survivors(run.seen)
