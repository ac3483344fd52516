"""The status cache: final job documents clients poll, in Redis (shared by every process) or, without
REDIS_URL (the embedded mode), in this process's memory for a few seconds (and their ids announced to
the web processes over core.local_events).

It is only a cache: any failure here is logged and ignored, and readers fall back to the database.
"""

from __future__ import annotations

import json
import logging
import time
from functools import cache
from typing import Any

import redis

from core import local_events
from core.settings import get_settings

log = logging.getLogger(__name__)
PREFIX = "deepscreen:job:"
DONE_CHANNEL = "deepscreen:job-finished"
FINAL = ("succeeded", "failed", "expired")


@cache
def get_redis() -> redis.Redis | None:
    url = get_settings().redis_url
    if not url:
        return None
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


LOCAL_TTL = 10.0  # seconds a process trusts its own copy (no shared cache to invalidate it)
LOCAL_MAX = 10_000
_local: dict[str, tuple[float, dict[str, Any]]] = {}


def _remember(doc: dict[str, Any]) -> None:
    if doc.get("status") not in FINAL:
        return
    if len(_local) >= LOCAL_MAX:
        _local.clear()
    _local[doc["id"]] = (time.monotonic() + LOCAL_TTL, doc)


def put(doc: dict[str, Any], announce: bool = False) -> None:
    """Cache one job's document; ``announce`` a job that just became final (long polls wake on it)."""
    if announce and doc.get("status") in FINAL:
        put_many([doc])
        return
    client = get_redis()
    if client is None:
        _remember(doc)
        return
    try:
        client.set(PREFIX + doc["id"], json.dumps(doc), ex=get_settings().status_cache_ttl)
    except redis.RedisError as exc:
        log.warning("status cache write failed for %s: %s", doc.get("id"), exc)


def put_many(docs: list[dict[str, Any]]) -> None:
    """Write a batch's final documents in one round trip and announce them on DONE_CHANNEL (long polls
    wake on it)."""
    client = get_redis()
    if client is None or not docs:
        for doc in docs:
            _remember(doc)
        local_events.announce([d["id"] for d in docs if d.get("status") in FINAL])  # the embedded mode's pub/sub
        return
    ttl = get_settings().status_cache_ttl
    try:
        pipe = client.pipeline(transaction=False)
        for doc in docs:
            pipe.set(PREFIX + doc["id"], json.dumps(doc), ex=ttl)
            pipe.publish(DONE_CHANNEL, doc["id"])
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("status cache write failed for %d jobs: %s", len(docs), exc)


def get(job_id: str) -> dict[str, Any] | None:
    client = get_redis()
    if client is None:
        hit = _local.get(job_id)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None
    try:
        raw = client.get(PREFIX + job_id)
    except redis.RedisError as exc:
        log.warning("status cache read failed for %s: %s", job_id, exc)
        return None
    return json.loads(raw) if isinstance(raw, (bytes, str)) else None


def forget() -> None:
    """Drop the cached client and copies (after fork, or when settings change in tests)."""
    get_redis.cache_clear()
    _local.clear()
