"""Ctrl-C and SIGTERM during `gradiend-flow run`: the first stops the run at its stages' next safe point
(gradiend_core.stop), a second one at once; either way what is finished stays in the store, and the
next run resumes from there.

The run goes on a thread of its own, and this process's main thread only waits for it and takes the
signals: on the main thread, Prefect's flow engine replaces the SIGTERM handler while a flow runs
(prefect.utilities.engine.capture_sigterm), and a KeyboardInterrupt raised there makes it wait for the
running tasks to finish (minutes) before it gives up.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Callable, Iterator, NoReturn, TypeVar

from gradiend_core import stop

SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")
# Prefect's words for a task or flow run ended by a KeyboardInterrupt (prefect.states), so by stop.Stopped,
# and for the log and event senders still busy when they are drained (prefect._internal.concurrency.services)
INTERRUPTED = "aborted by an interrupt signal"
STILL_SENDING = "Still processing items"


def exit_code(signum: int) -> int:
    """The shell's status of a process ended by `signum` (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum


def name(signum: int) -> str:
    return signal.Signals(signum).name


class Interrupted(Exception):
    """The run stopped because it was asked to by a signal."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {name(signum)}")
        self.signum = signum


def run_stoppable(work: Callable[[], T], at_once: Callable[[int], NoReturn]) -> T:
    """work() on a thread of its own: the first SIGINT or SIGTERM asks it to stop at its next safe point, a
    second calls at_once(signum), which ends the process. Raises Interrupted when a signal stopped the work
    before it finished; its own errors are raised as they are."""
    outcome: dict = {}
    received: list[int] = []

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as e:  # handed to the main thread
            outcome["error"] = e

    def handler(signum: int, frame) -> None:
        received.append(signum)
        if len(received) == 1:
            stop.request(name(signum))
        else:
            at_once(signum)

    stop.clear()
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        with quiet_stop_reports():
            worker = threading.Thread(target=run, name="gradiend-run")
            worker.start()
            worker.join()
            if received:
                flush_prefect()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if "error" not in outcome:
        return outcome["result"]  # finished before the stop took effect: nothing is left to resume
    if received:
        raise Interrupted(received[0]) from outcome["error"]
    raise outcome["error"]


def flush_prefect(timeout: float = 5.0) -> None:
    """Send Prefect's queued run logs and events now, while its API still runs: what they print comes before
    the line that ends a stopped run, not after it at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for sender in (APILogWorker, EventsWorker):
        sender.drain_all(timeout=timeout, at_exit=False)


class QuietStop(logging.Filter):
    """Once a stop is requested, drops the console lines of task and flow runs ended by it ("Crash detected!
    Execution was aborted by an interrupt signal", "Finished in state Crashed(...)"): every stage that
    stopped or had not started yet would print two, while the run ends with one line saying what was kept.
    Prefect's API still records each run's state. Also Prefect's note that its senders are still busy."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (stop.requested() and (INTERRUPTED in record.getMessage() or STILL_SENDING in record.getMessage()))


@contextlib.contextmanager
def quiet_stop_reports() -> Iterator[None]:
    """QuietStop on Prefect's console handlers (the loggers' handlers the logging config gave them)."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # (Prefect sets its logging up at its first logger or run)
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    handlers = {h for lg in loggers for h in lg.handlers if isinstance(h, PrefectConsoleHandler)}
    quiet = QuietStop()
    for h in handlers:
        h.addFilter(quiet)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(quiet)
