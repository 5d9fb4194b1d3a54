"""The `gradiend-flow` command as a process: its fast exit keeps the exit status, the output and the
delivery of Prefect's logs to the API server (flows.cli.entry)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "INFO"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_exits_zero_with_output_and_logs_delivered(tiny_config, tmp_path):
    r = _cli("run", str(tiny_config), "--store", str(tmp_path / "store"), "--json", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["stages"]["rewrite-3SG-strengthen"]["cached"] is False
    assert "Finished in state Completed" in r.stderr
    # the local API server stops only after Prefect has sent its last log lines
    assert "Error logging to API" not in r.stderr and "connection attempts failed" not in r.stderr


def test_bad_input_keeps_exit_status_and_message(tiny_config, tmp_path):
    r = _cli("run", str(tiny_config), "--store", str(tmp_path / "store"), "--set", "train.learning_rate=-1",
             home=tmp_path / "home")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "learning_rate" in r.stderr
    assert not (tmp_path / "store" / "extract-gradients").exists()
