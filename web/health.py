"""Liveness, readiness and metrics. Readiness checks every dependency a request needs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Blueprint, jsonify
from sqlalchemy import text

from core import status_cache, worker_registry
from core.db import get_engine
from core.object_store import get_store
from web import metrics
from web.auth import settings
from web.models_api import live_versions
from web.queue import celery

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


def _database() -> None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _broker() -> None:
    with celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _models() -> None:
    if not live_versions():
        raise RuntimeError("the model repository holds no models (run `deepscreen models build`)")


def _cache() -> None:
    client = status_cache.get_redis()
    if client is not None:
        client.ping()


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database, "broker": _broker, "object_store": lambda: get_store().ping(),
    "models": _models, "cache": _cache,
}


@bp.get("/ready")
def ready():  # type: ignore[no-untyped-def]
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = {"ok": True}
        except Exception as exc:  # each failure is reported, none is raised
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    failed = sorted(name for name, r in results.items() if not r["ok"])
    if failed:
        body = {"error": {"code": "not_ready", "message": f"unavailable: {', '.join(failed)}",
                          "details": {"checks": results}}}
        return jsonify(body), 503
    return jsonify({"status": "ready", "checks": results, "workers": _workers()})


def _workers() -> list[dict]:
    """Live worker processes and what each serves (models@versions, provider, precision, batch size),
    from their heartbeats. Informational: the web accepts jobs while no worker runs (they queue)."""
    try:
        return worker_registry.live(timedelta(seconds=3 * max(1, settings().lease_seconds // 3)))
    except Exception as exc:
        return [{"error": f"{type(exc).__name__}: {exc}"[:300]}]


@bp.get("/metrics")
def prometheus():  # type: ignore[no-untyped-def]
    return metrics.exposition()
