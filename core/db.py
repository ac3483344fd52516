"""Engine and session handling, one engine per process.

Forked processes (gunicorn and Celery workers) must not share pooled connections with their
parent, so ``dispose_engine()`` is called after fork; the next use builds a fresh engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as exc_module
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the web read while a worker writes; busy_timeout waits instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL still survives any process crash (kill -9 included); only an OS crash or
    # power cut can lose the last commits. It halves the cost of a commit (no fsync per transaction).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 5})
    event.listen(engine, "checkout", _ping_if_idle)
    event.listen(engine, "checkin", _mark_used)
    return engine


IDLE_PING_SECONDS = 5.0


def _mark_used(_dbapi_connection, record) -> None:
    record.info["used_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
    """A PostgreSQL restart must not surface as a 500 on the next request, yet pinging on every
    checkout (pool_pre_ping) costs a round trip per transaction. Ping only a connection idle for a
    while: a busy one is known good, and one that died since is replaced by the pool."""
    if time.monotonic() - record.info.get("used_at", 0.0) < IDLE_PING_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
    except Exception as exc:
        raise exc_module.DisconnectionError(str(exc)) from exc


def get_engine() -> Engine:
    global _engine, _sessionmaker
    if _engine is None:
        with _lock:  # gthread web workers: the first requests race here; one engine (one pool) per process
            if _engine is None:
                engine = make_engine(get_settings().database_url)
                _sessionmaker = sessionmaker(engine, expire_on_commit=False)
                _engine = engine
    return _engine


def dispose_engine() -> None:
    """Forget the engine (after fork, or when settings change in tests)."""
    global _engine, _sessionmaker
    if _engine is not None:
        _engine.dispose(close=False)
    _engine = None
    _sessionmaker = None


def upsert(dialect: str) -> Callable[..., Any]:
    """The dialect's ``insert`` (it has ON CONFLICT): PostgreSQL in service mode, SQLite embedded."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    get_engine()
    assert _sessionmaker is not None
    session = _sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
