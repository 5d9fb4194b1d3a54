"""Integration: a real `prefect server`, the `gradiend-pool` process work pool and a worker, the deployment
from deployments/prefect.yaml (registered with deployments/deploy.sh), one run through it, and its cron
schedule filling in scheduled runs (what silently stops working with SQLAlchemy 2.1).

Every process is started in its own session and stopped by process group in a finalizer (SIGINT, then
SIGKILL after a grace period), so a failing assertion leaves nothing running.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from gradiend_core.testing import tiny_experiment


pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = [str(BIN / "prefect")] if (BIN / "prefect").exists() else [sys.executable, "-m", "prefect"]
DEPLOYMENT = "gradiend-flow-from-file/nightly"
RUN_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no log at {path})"


class Service:
    """A long-running child process in its own process group, with its output in a log file."""

    def __init__(self, cmd: list[str], env: dict, log: Path):
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGINT the whole group twice (an idle Prefect worker ignores the first for 20 s+; on the second
        the CLI SIGKILLs it), then SIGKILL whatever is left."""
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass
        try:  # flow-run subprocesses share the group: make sure none outlives the worker
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._fh.close()


def cli(env: dict, *args: str, timeout: float = 120) -> str:
    p = subprocess.run([*PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"prefect {' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Environment shared by the CLI and the worker; the server gets its own PREFECT_HOME."""
    home = tmp_path_factory.mktemp("client-home")
    e = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    e.update({"PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
              "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
              "PREFECT_LOGGING_LEVEL": "INFO", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "PREFECT_WORKER_QUERY_SECONDS": "2"})
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    home = tmp_path_factory.mktemp("server-home")
    url = env["PREFECT_API_URL"]
    port = url.rsplit(":", 1)[1].split("/")[0]
    svc = Service([*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port],
                  {**env, "PREFECT_HOME": str(home)}, home / "server.log")
    try:
        deadline = time.monotonic() + 120  # ~10-30 s on a fresh database here
        while True:
            assert svc.proc.poll() is None, f"prefect server exited:\n{tail(svc.log)}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.read().strip() == b"true":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no /api/health after 120 s:\n{tail(svc.log)}"
            time.sleep(1)
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def worker(env, server, tmp_path_factory):
    cli(env, "work-pool", "create", "gradiend-pool", "--type", "process")
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    svc = Service([*PREFECT, "worker", "start", "--pool", "gradiend-pool", "--limit", "1"], env, log)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def client(env, server):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as c:
            yield c


@pytest.fixture(scope="module")
def deployed(env, worker, tiny_model_dir, tmp_path_factory):
    """The repo's prefect.yaml deployed with the tiny experiment and a fresh absolute store."""
    tmp = tmp_path_factory.mktemp("deployed")
    experiment = tmp / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(tiny_experiment(tiny_model_dir)))
    store = tmp / "store"
    p = subprocess.run([str(REPO / "deployments" / "deploy.sh"), "--param", f"experiment_file={experiment}",
                        "--param", f"store={store}"], env=env, cwd=tmp, capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, f"deploy.sh failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return {"experiment": experiment, "store": store}


def flow_runs(client, **filters):
    from prefect.client.schemas import filters as f

    return client.read_flow_runs(flow_run_filter=f.FlowRunFilter(**filters))


def test_deployment_matches_prefect_yaml(client, deployed):
    d = client.read_deployment_by_name(DEPLOYMENT)
    assert d.work_pool_name == "gradiend-pool"
    assert d.parameters == {"experiment_file": str(deployed["experiment"]), "store": str(deployed["store"]),
                            "overrides": []}
    (sched,) = d.schedules
    assert sched.active and sched.schedule.cron == "0 3 * * *" and sched.schedule.timezone == "UTC"
    # the pull step and the job environment point the worker at this checkout, resolved at deploy time
    assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    assert d.job_variables["env"]["GRADIEND_REPO"] == str(REPO)
    assert d.job_variables["env"]["DO_NOT_TRACK"] == "1"


def test_cron_schedule_creates_scheduled_runs(client, server, deployed):
    from prefect.client.schemas import filters as f
    from prefect.client.schemas.objects import StateType

    d = client.read_deployment_by_name(DEPLOYMENT)
    deadline = time.monotonic() + 60  # the recent-deployments scheduler loops every 5 s
    while True:
        runs = flow_runs(client, deployment_id=f.FlowRunFilterDeploymentId(any_=[d.id]),
                         state=f.FlowRunFilterState(type=f.FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
        if runs or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert runs, f"the scheduler created no runs in 60 s (SQLAlchemy >= 2.1?); server log:\n{tail(server.log)}"
    assert "bulk DML" not in server.log.read_text(errors="replace")
    now = dt.datetime.now(dt.timezone.utc)
    starts = sorted(r.expected_start_time.astimezone(dt.timezone.utc) for r in runs)
    assert all((s.hour, s.minute, s.second) == (3, 0, 0) for s in starts), starts
    assert starts[0] > now - dt.timedelta(minutes=1)
    assert all(b - a == dt.timedelta(days=1) for a, b in zip(starts, starts[1:])), starts  # daily
    assert all(r.parameters["experiment_file"] == str(deployed["experiment"]) for r in runs)


@pytest.fixture(scope="module")
def finished(client, worker, deployed) -> dict:
    """One run created through the deployment (as the UI's "Run" button does), awaited to a final state."""
    from prefect.client.schemas import filters as f

    t0 = time.monotonic()
    run = client.create_flow_run_from_deployment(client.read_deployment_by_name(DEPLOYMENT).id)
    while not (run := client.read_flow_run(run.id)).state.is_final():
        assert worker.proc.poll() is None, f"worker died:\n{tail(worker.log)}"
        assert time.monotonic() - t0 < RUN_TIMEOUT_S, (
            f"run still {run.state.name} after {RUN_TIMEOUT_S} s; worker log:\n{tail(worker.log)}")
        time.sleep(2)
    assert run.state.is_completed(), f"run ended {run.state.name}: {run.state.message}\n{tail(worker.log, 120)}"
    subs = flow_runs(client, parent_flow_run_id=f.FlowRunFilterParentFlowRunId(any_=[run.id]))
    assert len(subs) == 1, subs  # the pipeline itself runs as one subflow
    arts = client.read_artifacts(flow_run_filter=f.FlowRunFilter(id=f.FlowRunFilterId(any_=[run.id, subs[0].id])))
    return {"run": run, "sub": subs[0], "artifacts": {a.key: a for a in arts if a.key}}


def test_run_through_deployment(client, deployed, finished, capsys):
    from prefect.client.schemas import filters as f

    from tasks.artifacts import artifact_key

    # the flow's return value (persisted by the worker) is the pipeline summary of a cold store
    summary = finished["run"].state.result()
    stages = summary["stages"]
    assert {"train-seed-0", "train-seed-1", "select-seed", "decoder-grid", "rewrite-3SG-strengthen"} <= set(stages)
    assert not any(st["cached"] for st in stages.values())
    assert Path(summary["store"]) == deployed["store"].resolve()
    assert -1.0 <= summary["metrics"]["encoder_correlation"] <= 1.0
    assert Path(summary["rewritten_model"], "config.json").is_file()

    # every stage ran as a completed task of the subflow
    sub = finished["sub"]
    assert sub.state.is_completed() and sub.flow_id != finished["run"].flow_id
    tasks = client.read_task_runs(flow_run_filter=f.FlowRunFilter(id=f.FlowRunFilterId(any_=[sub.id])))
    drawn = sum("report" in st for st in stages.values())  # plotting stages: a report task each
    assert len(tasks) == len(stages) + drawn and all(t.state.is_completed() for t in tasks), \
        [(t.name, t.state.name) for t in tasks]

    # the UI artifacts: one per stage (seeds keyed by seed) and the run report
    name = yaml.safe_load(deployed["experiment"].read_text())["name"]
    keys = set(finished["artifacts"])
    expected = {artifact_key(name, s) for s in ("prepare-model", "create-data", "extract-gradients", "pre-prune",
                                                "select-seed", "evaluate-encoder", "decoder-grid", "report")}
    expected |= {artifact_key(name, "train-seed", str(i)) for i in (0, 1)}
    expected |= {artifact_key(name, "rewrite", "3SG-strengthen")}  # one per rewrite request
    assert expected <= keys, expected - keys
    report = finished["artifacts"][artifact_key(name, "report")].data
    assert all(st["key"] in report for st in stages.values())

    # the worker wrote to the store the user reads: the CLI sees every stage as cached under the same key
    from flows.cli import main

    assert main(["status", str(deployed["experiment"]), "--store", str(deployed["store"])]) == 0
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()]  # stage key state
    assert {r[0]: r[1] for r in rows} == {sid: st["key"] for sid, st in stages.items()}
    assert {r[2] for r in rows} == {"cached"}


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1800",
                  "--virtual-time-budget=20000"]  # without it the page is captured before its data loads


def chromium(url: str, out: Path, profile: Path, what: str) -> str:
    """Render `url` headless: --dump-dom returns the DOM, --screenshot writes `out` (a PNG)."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    arg = "--dump-dom" if what == "dom" else f"--screenshot={out}"
    p = subprocess.Popen([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", arg, url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=120)
    finally:  # chromium forks helpers (zygote, renderer): take down the whole group
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert p.returncode == 0, stderr[-2000:]
    return stdout


def test_ui_shows_report_seed_table_and_plot(env, deployed, finished, tmp_path):
    """The Prefect UI renders the report and the seed-selection artifact (table + inline PNG)."""
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("headless browser check needs chromium (Debian: apt-get install -y chromium)")
    from tasks.artifacts import artifact_key

    ui = env["PREFECT_API_URL"].removesuffix("/api")
    name = yaml.safe_load(deployed["experiment"].read_text())["name"]
    pages = {}
    for stage in ("report", "select-seed"):
        art = finished["artifacts"][artifact_key(name, stage)]
        url = f"{ui}/artifacts/artifact/{art.id}"
        pages[stage] = chromium(url, None, tmp_path / f"profile-{stage}-dom", "dom")
        png = tmp_path / f"ui-{stage}.png"
        chromium(url, png, tmp_path / f"profile-{stage}-png", "png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
        print(f"screenshot: {png}")
    report, seeds = pages["report"], pages["select-seed"]
    assert f"gradiend-flow run: {name}" in report and "<table" in report
    assert all(k in report for k in finished["artifacts"] if k.startswith(artifact_key(name, "train-seed")))
    assert "<table" in seeds and ">seed<" in seeds and "winner" in seeds  # the seed table
    assert 'src="data:image/png;base64,' in seeds  # the convergence plot, inlined
