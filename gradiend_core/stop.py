"""Asking a running pipeline to stop: a process-wide request that stages honour at their next safe point.

The driver of a run (the CLI's signal handler, flows/interrupt.py) calls request(); every stage passes a
safe point each time it reports progress (after a written row block, a training step, a grid cell) and
at its start. There `reached` raises Stopped, so the work done so far is on disk as a finished step left
it. Stopped is a KeyboardInterrupt: `except Exception` handlers let it through, Prefect records the task
run as interrupted, and a resumable stage keeps its staging dir for the next run (runner.run_stage).
"""
from __future__ import annotations

import threading


class Stopped(KeyboardInterrupt):
    """The run was asked to stop (Ctrl-C, SIGTERM); raised at a safe point of a stage."""


_asked = threading.Event()
_state = {"reason": ""}
_where: dict[str, str] = {}  # progress label -> its last message, of the steps that stopped
_lock = threading.Lock()


def request(reason: str) -> None:
    """Ask every stage of this process to stop at its next safe point (safe to call from a signal handler)."""
    _state["reason"] = reason
    _asked.set()


def requested() -> bool:
    return _asked.is_set()


def reached(label: str = "", message: str = "") -> None:
    """A safe point of step `label` (its progress `message`): raises Stopped once a stop was requested."""
    if not _asked.is_set():
        return
    if label:
        with _lock:
            _where[label] = message
    raise Stopped(f"stopped by {_state['reason']}" + (f" at {label}: {message}" if label else ""))


def stopped_at() -> dict[str, str]:
    """Progress label -> last progress message, of every step that stopped at a safe point."""
    with _lock:
        return dict(_where)


def clear() -> None:
    """Forget a request (the next run of this process runs to its end)."""
    _asked.clear()
    with _lock:
        _where.clear()
