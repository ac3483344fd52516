"""Logging for every process (web, workers, beat): JSON lines by default (LOG_FORMAT=json) or text,
credentials redacted (core.log_redaction), and the request id and job id of the work in hand on every
line, so one request can be followed from nginx to the worker that screened it.

The ids travel in context variables: the web sets the request id per request; a worker sets the job
id and the request id that submitted it (stored on the job row) around each job of a batch.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from core import log_redaction

request_id_var: ContextVar[str | None] = ContextVar("deepscreen_request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("deepscreen_job_id", default=None)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"


class ContextFilter(logging.Filter):
    """Put the current request id and job id on the record (unless the call passed its own)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        record.role = self.role
        return True


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{k}={v}" for k in ("request_id", "job_id") if (v := getattr(record, k, None)))
        return super().format(record) + (f" [{ids}]" if ids else "")


def configure(level: str = "INFO", fmt: str = "json", role: str = "web") -> None:
    """One stderr handler on the root logger, replacing any earlier one of ours (safe to call again)."""
    log_redaction.install()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_deepscreen", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._deepscreen = True  # type: ignore[attr-defined]
    if fmt == "json":
        handler.setFormatter(JsonFormatter(FIELDS, rename_fields={"levelname": "level", "asctime": "time",
                                                                  "name": "logger", "process": "pid"}))
    else:
        handler.setFormatter(_Text("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter(role))
    root.addHandler(handler)
    root.setLevel(level.upper())


def clean_request_id(value: str | None) -> str | None:
    """A caller's X-Request-ID if it is a sane token (it goes into logs and headers), else None."""
    return value if value and REQUEST_ID.fullmatch(value) else None


@contextmanager
def job_context(job_id: str | None, request_id: str | None = None) -> Iterator[None]:
    job_token = job_id_var.set(job_id)
    request_token = request_id_var.set(request_id)
    try:
        yield
    finally:
        job_id_var.reset(job_token)
        request_id_var.reset(request_token)
