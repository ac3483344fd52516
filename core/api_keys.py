"""API keys: ``ds_<id>_<secret>``; only sha256(secret) is stored, compared in constant time.

A key is long random data, so a fast hash is enough (no password stretching needed); the id part
finds the row without scanning.

Personal keys (one per browser-extension user) add a rate limit of their own and an expiry. Tokens
traded for a key carry its id, and every request with such a token asks ``live_key`` whether the key
still stands: one primary-key read per key per process every API_KEY_CACHE_SECONDS at most, so a
revocation stops its user within that many seconds (at once in the process that revoked it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from limits import parse
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import ApiKey, utcnow
from core.settings import get_settings
from core.tokens import DEFAULT_SCOPES, SCOPES


@dataclass(frozen=True)
class KeyState:
    """What a request needs to know about the key behind its token."""

    id: str
    subject: str
    scopes: tuple[str, ...]
    rate_limit: str | None
    expires_at: datetime | None


_cache: dict[str, tuple[float, KeyState | None]] = {}
_cache_lock = threading.Lock()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def check_rate_limit(value: str) -> str:
    """A flask-limiter limit string ("60/minute", "1000 per day"); ValueError otherwise."""
    try:
        parse(value)
    except ValueError as exc:
        raise ValueError(f"not a rate limit (like 60/minute): {value!r}") from exc
    return value


def create_api_key(session: Session, subject: str, scopes: tuple[str, ...] = DEFAULT_SCOPES,
                   rate_limit: str | None = None, expires_at: datetime | None = None,
                   retention_days: int | None = None) -> str:
    """Store a new key and return it in full: the only time it is ever visible."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    if rate_limit is not None:
        check_rate_limit(rate_limit)
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    session.add(ApiKey(id=key_id, secret_hash=_hash(secret), subject=subject, scopes=" ".join(scopes),
                       rate_limit=rate_limit, expires_at=expires_at, retention_days=retention_days))
    return f"ds_{key_id}_{secret}"


def _live(row: ApiKey | None, now: datetime) -> bool:
    if row is None or row.revoked_at is not None:
        return False
    expires = _aware(row.expires_at)
    return expires is None or expires > now


def check_api_key(session: Session, presented: str) -> ApiKey | None:
    """The live (not revoked, not expired) key row for ``presented``, or None."""
    try:
        prefix, key_id, secret = presented.split("_", 2)
    except ValueError:
        return None
    if prefix != "ds":
        return None
    row = session.get(ApiKey, key_id)
    if not _live(row, utcnow()):
        return None
    assert row is not None
    return row if hmac.compare_digest(row.secret_hash, _hash(secret)) else None


def key_state(row: ApiKey) -> KeyState:
    return KeyState(row.id, row.subject, tuple(row.scopes.split()), row.rate_limit, _aware(row.expires_at))


def live_key(key_id: str) -> KeyState | None:
    """The key ``key_id`` while it is live, else None; cached per process for API_KEY_CACHE_SECONDS."""
    ttl = get_settings().api_key_cache_seconds
    now = time.monotonic()
    cached = _cache.get(key_id)
    if cached is not None and now - cached[0] < ttl:
        state = cached[1]
    else:
        with session_scope() as session:
            row = session.get(ApiKey, key_id)
            state = key_state(row) if row is not None and _live(row, utcnow()) else None
        with _cache_lock:
            if len(_cache) > 10_000:  # a flood of distinct ids must not grow the cache without bound
                _cache.clear()
            _cache[key_id] = (now, state)
    if state is not None and state.expires_at is not None and state.expires_at <= utcnow():
        return None  # expired while cached
    return state


def forget(key_id: str | None = None) -> None:
    """Drop cached key states (all, or one), e.g. after a revocation in this process."""
    with _cache_lock:
        if key_id is None:
            _cache.clear()
        else:
            _cache.pop(key_id, None)


def revoke_api_key(session: Session, key_id: str) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    forget(key_id)
    return True


def list_api_keys(session: Session) -> list[ApiKey]:
    """Every key, newest first (operators' `deepscreen apikey list`; secrets are never stored)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))
