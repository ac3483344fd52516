"""Web-side Prometheus metrics; multi-process aware when PROMETHEUS_MULTIPROC_DIR is set (gunicorn)."""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

REQUESTS = Counter("deepscreen_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
# A long poll's hold (``?wait=``) is not latency: it is subtracted, so a p95 alert sees the server's
# own time whatever clients ask to wait.
LATENCY = Histogram("deepscreen_http_request_seconds", "HTTP latency, not counting a ?wait= hold", ["endpoint"])
SUBMITTED = Counter("deepscreen_jobs_submitted_total", "Accepted submissions", ["kind", "outcome"])


def instrument(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        if "started" in g:
            held = g.get("waited_seconds", 0.0)
            LATENCY.labels(endpoint).observe(max(0.0, time.perf_counter() - g.started - held))
        return response


def exposition() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
