"""Best-effort calls to Prefect's API for the UI (progress and report artifacts): they never hold up a stage.

Each call is made with no client retries (Prefect's default retries a refused connection 5 times with
backoff: ~70 s per call when the API is gone), and after the first failure this process makes none until
the next flow run (`reset`): one warning says so, and the stage logs keep reporting the progress.
Progress updates are sent from a background thread besides (`ProgressArtifact`), so a slow API costs
the stage nothing either.
"""
from __future__ import annotations

import contextvars
import logging
import threading
from typing import Any, Callable

log = logging.getLogger("tasks.ui_calls")

_off: list[str] = []  # why UI calls are off (empty: on)
_lock = threading.Lock()


def reset() -> None:
    """UI calls on again (a new flow run: its API may answer)."""
    with _lock:
        _off.clear()


def off() -> bool:
    return bool(_off)


def call(fn: Callable[..., Any], *args, what: str = "", **kwargs) -> Any:
    """fn(*args, **kwargs) with no client retries; None when UI calls are off or this one failed. An API that
    does not answer turns them off (logged once); any other failure is logged as a warning naming `what`."""
    if _off:
        return None
    import httpx
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):
            return fn(*args, **kwargs)
    except httpx.TransportError as e:  # refused, reset, timed out: nobody answers
        _turn_off(e)
    except Exception as e:  # the API answered with an error, or the content was refused
        run_logger().warning("could not create %s: %s", what or getattr(fn, "__name__", "artifact"), e)
    return None


def _turn_off(e: Exception) -> None:
    with _lock:
        first = not _off
        _off.append(f"{type(e).__name__}: {e}")
    if first:
        run_logger().warning("Prefect's API did not answer (%s): no more progress or report artifacts in this "
                             "run; the progress stays in this log", _off[0])


def run_logger():
    """The Prefect run logger, or plain logging outside a run."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # no run context
        return log


class ProgressArtifact:
    """One step's progress artifact, sent from a background thread: `update` never waits; a value that comes
    while the last is still being sent replaces any value not sent yet."""

    def __init__(self, description: str):
        self.description = description
        self.id = None
        self.context = contextvars.copy_context()  # the task run the artifact belongs to
        self.pending: float | None = None
        self.busy = False
        self.lock = threading.Lock()

    def update(self, pct: float) -> None:
        if _off:
            return
        with self.lock:
            self.pending = pct
            if self.busy:
                return
            self.busy = True
        threading.Thread(target=self.context.run, args=(self._send,), name="progress-artifact", daemon=True).start()

    def _send(self) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        while True:
            with self.lock:
                pct, self.pending = self.pending, None
                if pct is None:
                    self.busy = False
                    return
            if self.id is None:
                self.id = call(create_progress_artifact, pct, description=self.description, what=self.description)
            else:
                call(update_progress_artifact, self.id, pct, what=self.description)
