"""``?wait=SECONDS`` on the job reads, and the ``Retry-After`` policy of every response.

A long poll holds one gunicorn *thread* (gthread workers; WEB_THREADS per process), never a
process: the wait itself is a ``threading.Event`` that core.job_events sets when the job's
finish is announced. At most 3/4 of a process's threads wait at once, so ordinary requests
always find a free thread; a ``?wait=`` beyond that answers at once (with ``Retry-After``),
which every client already handles. Under a sync worker (or WEB_THREADS=1) nothing waits.

``Retry-After`` means "ask again in N seconds" and nothing else: on a 429 (the limiter's), on
answers that describe unfinished work (a queued or running job, a batch still running) and on a 503
``server_busy``. flask-limiter
adds one to *every* response it counts (the seconds until its window resets), which told pollers
to come back in up to a minute; ``install`` replaces it on those answers and drops it elsewhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, has_request_context, request

from core.job_events import wait_for_final
from core.settings import Settings
from web.errors import ApiError

MAX_WAIT_SECONDS = 30
RETRY_AFTER_SECONDS = 1  # how soon a client should ask again about unfinished work


def max_waiters(settings: Settings) -> int:
    """How many requests of this process may wait at once: 3/4 of its threads, and none under a sync
    gunicorn worker (one request at a time: a wait would hold the whole process), whatever
    WEB_THREADS says."""
    environ = request.environ if has_request_context() else {}
    if str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn") and not environ.get("wsgi.multithread"):
        return 0
    return settings.web_threads * 3 // 4


def wait_seconds() -> float:
    """``?wait=`` as seconds (0 when absent); 400 ``bad_wait`` unless 0 ≤ N ≤ 30."""
    raw = request.args.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_WAIT_SECONDS:
        raise ApiError(400, "bad_wait", f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS}",
                       {"max": MAX_WAIT_SECONDS})
    return value


def read_waiting(job_id: str, read: Callable[[], dict[str, Any]], settings: Settings,
                 seconds: float | None = None) -> dict[str, Any]:
    """``read()`` at once, or, with ``?wait=`` (``seconds`` when the caller has parsed it already), as
    soon as the job is final or the wait is over."""
    seconds = wait_seconds() if seconds is None else seconds
    if seconds <= 0:
        return read()
    started = time.perf_counter()
    doc, waited = wait_for_final(job_id, seconds, read, max_waiters(settings))
    if waited:  # held for the job, not working: kept out of the latency histogram (web.metrics)
        g.waited_seconds = g.get("waited_seconds", 0.0) + time.perf_counter() - started
    return doc


def ask_again(seconds: int = RETRY_AFTER_SECONDS) -> None:
    """Mark this response as describing unfinished work: it carries ``Retry-After: seconds``."""
    g.retry_after = seconds


def _retry_after(response: Response) -> Response:
    wanted = g.get("retry_after")
    if wanted is not None and (response.status_code < 400 or response.status_code == 503):
        response.headers["Retry-After"] = str(wanted)
    elif response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response


def install(app: Flask) -> None:
    """Register the Retry-After policy. Call it BEFORE ``limiter.init_app``: after_request hooks run
    in reverse order, so this one then sees (and corrects) the limiter's header."""
    app.after_request(_retry_after)
