"""Prefect logs every failed task and flow run with its traceback. For a user-facing error (a
GradiendError: one line that says what is wrong and how to fix it, e.g. the disk filled up during
extraction) the traceback only buries that line: keep Prefect's one-line log record, drop the traceback."""
from __future__ import annotations

import logging

RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


class DropUserErrorTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from gradiend_core.errors import GradiendError

        if record.exc_info and isinstance(record.exc_info[1], GradiendError):
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Once per process: on Prefect's run loggers (records of failed runs are logged there)."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropUserErrorTracebacks) for f in logger.filters):
            logger.addFilter(DropUserErrorTracebacks())
