"""UI calls to Prefect's API never hold up a stage (tasks/ui_calls.py): a gone API costs one attempt, then
none for the rest of the run; a hung one costs the stage nothing (progress is sent in the background)."""
import socket
import threading
import time

import pytest

from tasks import ui_calls


class FakeAPI:
    """A TCP port standing in for a broken API server: it counts connections and either drops each at once
    (`hang=False`: the server is gone mid-request) or holds it unanswered until `release`."""

    def __init__(self, hang: bool):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/api"
        self.connections, self.hang, self.release = 0, hang, threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.connections += 1
            if self.hang:
                self.release.wait()
            conn.close()

    def close(self) -> None:
        self.release.set()
        self.sock.close()


@pytest.fixture
def api_at():
    from prefect.settings import PREFECT_API_REQUEST_TIMEOUT, PREFECT_API_URL, temporary_settings

    made = []

    def at(hang: bool):
        made.append(FakeAPI(hang))
        return temporary_settings(updates={PREFECT_API_URL: made[-1].url, PREFECT_API_REQUEST_TIMEOUT: 10})

    ui_calls.reset()
    yield at, made
    for a in made:
        a.close()
    ui_calls.reset()


def test_a_gone_api_is_tried_once_then_left_alone(api_at):
    import logging

    from prefect.artifacts import create_markdown_artifact

    at, made = api_at
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("tasks.ui_calls").addHandler(handler)  # (outside a run: plain logging)
    with at(hang=False):
        assert ui_calls.call(create_markdown_artifact, markdown="x", key="k", what="artifact k") is None
        assert made[0].connections == 1  # no retries (Prefect's default: 5 more, with backoff, ~70 s)
        assert ui_calls.off()
        assert ui_calls.call(create_markdown_artifact, markdown="y", key="k2") is None
        assert made[0].connections == 1  # not even tried
    logging.getLogger("tasks.ui_calls").removeHandler(handler)
    warnings = [r for r in records if "did not answer" in r.getMessage()]
    assert len(warnings) == 1 and "no more progress or report artifacts" in warnings[0].getMessage()
    ui_calls.reset()  # the next flow run tries again
    assert not ui_calls.off()


def test_progress_updates_never_wait_for_a_hung_api(api_at):
    at, made = api_at
    with at(hang=True):
        progress = ui_calls.ProgressArtifact("extract-gradients progress")
        t0 = time.monotonic()
        for pct in (10.0, 20.0, 30.0):
            progress.update(pct)
        waited = time.monotonic() - t0
        t1 = time.monotonic()
        while made[0].connections == 0 and time.monotonic() - t1 < 30:  # the background send reached it
            time.sleep(0.05)
        assert made[0].connections == 1  # one request in flight; the later values wait as one
        assert waited < 5  # a waiting update would take the 10 s request timeout
        made[0].close()  # the API goes: the send fails and turns UI calls off
        t1 = time.monotonic()
        while not ui_calls.off() and time.monotonic() - t1 < 30:
            time.sleep(0.05)
        assert ui_calls.off()
