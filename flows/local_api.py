"""Prefect's temporary local API server, started as the first thing a run does.

With no PREFECT_API_URL configured, Prefect starts a temporary server (uvicorn on 127.0.0.1 serving
`prefect.server.api.server:create_app`, its SQLite database under PREFECT_HOME) at the first client
call: after the caller has imported the server package (~2.6 s of this process's time, only to launch
a subprocess) and finished its own checks, so a run waits ~4 s for it. Here the same command starts
before the run's imports and preflight and comes up on the other core while they run; the flow
reaches it through PREFECT_API_URL set for the run (`settings()`, also passed on to Dask/Ray workers).
Like Prefect's own, one server serves every run of the process and stops when the process exits; unlike
Prefect's, it runs in a session of its own, so the Ctrl-C a terminal sends to the run's process group does
not stop it under the run (which stops at its next safe point, flows/interrupt.py), and it ends by itself
when the process that started it ends in any way, SIGKILL included (its lifeline: flows/api_server.py).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PORT_IN_USE = 3  # uvicorn's exit status when it cannot bind


@dataclass
class LocalAPI:
    process: subprocess.Popen
    port: int
    lifeline: int = -1  # write end of the pipe whose end-of-file stops the server (never written to)
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def ready(self) -> bool:
        """True once /health answers (a short probe; never raises)."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        while not self.ready():
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"Prefect's temporary API server exited with status {code} before it "
                                   "was ready (its errors are printed above); set PREFECT_API_URL to use "
                                   "a running server instead")
            if time.monotonic() - self.started > timeout:
                raise RuntimeError(f"Prefect's temporary API server did not answer within {timeout:.0f} s; "
                                   "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or set "
                                   "PREFECT_API_URL to a running server")
            time.sleep(0.05)

    def settings(self):
        """Context in which this process's Prefect clients (and workers it starts) use this server."""
        from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

        # no UI URL: this server does not serve the UI (as Prefect's own temporary one), so no links to it
        return temporary_settings(updates={PREFECT_API_URL: self.url, PREFECT_UI_URL: ""})

    def stop(self, wait: bool = True) -> None:
        """Stop the server: closing its lifeline makes it shut down quietly (flows/api_server.py); wait=False:
        without waiting for it (a process about to exit)."""
        from .api_server import GRACE_S

        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1
        elif self.process.poll() is None:
            self.process.terminate()
        if wait and self.process.poll() is None:
            try:
                self.process.wait(timeout=GRACE_S + 5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_current: LocalAPI | None = None


def start() -> LocalAPI | None:
    """This process's server, started now if needed; None when Prefect is configured to use another
    API (PREFECT_API_URL set in the environment or the active profile) or temporary servers are off."""
    global _current
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    if _current is not None and _current.process.poll() is None:
        return _current
    _current = LocalAPI(*_launch(_free_port()))
    atexit.register(_current.stop)
    return _current


def current() -> LocalAPI | None:
    """This process's server, if one was started."""
    return _current


def ready(api: LocalAPI) -> LocalAPI:
    """`api` once it answers (the settings' startup timeout); a port taken between choosing and binding it
    gets one retry on another port, whose server is returned (and used by later runs) instead."""
    global _current
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    timeout = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    try:
        api.wait_ready(timeout)
    except RuntimeError:
        if api.process.poll() != PORT_IN_USE:
            raise
        api = _current = LocalAPI(*_launch(_free_port()))
        atexit.register(api.stop)
        api.wait_ready(timeout)
    return api


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the server's entry (flows/api_server.py) imported from this checkout, whatever the working directory holds
SERVER = "import sys; sys.path.insert(0, sys.argv.pop(1)); from flows.api_server import main; main()"


def _launch(port: int) -> tuple[subprocess.Popen, int, int]:
    """(process, port, lifeline) of a new server: Prefect's own temporary-server command line and environment
    (prefect.server.api.server), in a session of its own and watching its lifeline (flows/api_server.py)."""
    import prefect
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
           **get_current_settings().to_environment_variables(exclude_unset=True)}
    watched, lifeline = os.pipe()  # both close-on-exec: only the server gets `watched`, and no child `lifeline`
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(Path(__file__).resolve().parents[1]), str(watched),
             "--app-dir", str(prefect.__module_path__.parent), "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            env=env, pass_fds=(watched,), start_new_session=True)
    except BaseException:
        os.close(lifeline)
        raise
    finally:
        os.close(watched)
    return process, port, lifeline
