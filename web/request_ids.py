"""Request ids and the access log: the caller's (or nginx's) X-Request-ID, else a fresh one, on every
log line of the request, in the response header, on the job row and on the messages it sends."""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, g, request

from core.logs import clean_request_id, request_id_var

log = logging.getLogger("deepscreen.access")


def current() -> str | None:
    return g.get("request_id")


def install(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = clean_request_id(request.headers.get("X-Request-ID")) or uuid.uuid4().hex
        g.request_token = request_id_var.set(g.request_id)
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
            principal = g.get("principal")
            log.info("%s %s %d", request.method, request.path, response.status_code, extra={
                "method": request.method, "path": request.path, "status": response.status_code,
                "duration_ms": round(1000 * (time.perf_counter() - g.request_started), 2),
                "subject": getattr(principal, "subject", None), "remote_addr": request.remote_addr,
            })
        return response

    @app.teardown_request
    def _reset(_exc: BaseException | None) -> None:
        token = g.pop("request_token", None)
        if token is not None:
            request_id_var.reset(token)
