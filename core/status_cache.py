"""The Redis status cache: the job document clients poll, written at every transition.

It is only a cache: any failure here is logged and ignored, and readers fall back to the database.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any

import redis

from core.settings import get_settings

log = logging.getLogger(__name__)
PREFIX = "deepscreen:job:"
DONE_CHANNEL = "deepscreen:job-finished"


@cache
def get_redis() -> redis.Redis | None:
    url = get_settings().redis_url
    if not url:
        return None
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def put(doc: dict[str, Any]) -> None:
    client = get_redis()
    if client is None:
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
        return None
    try:
        raw = client.get(PREFIX + job_id)
    except redis.RedisError as exc:
        log.warning("status cache read failed for %s: %s", job_id, exc)
        return None
    return json.loads(raw) if isinstance(raw, (bytes, str)) else None


def forget() -> None:
    """Drop the cached client (after fork, or when settings change in tests)."""
    get_redis.cache_clear()
