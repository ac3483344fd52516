"""Rate-limit counters in a SQLite file, for the embedded mode (no Redis).

limits' ``memory://`` storage counts in each gunicorn process apart, so with ``WEB_WORKERS`` processes a
caller got up to that many times its limit, the auth endpoint's brute-force limit included. A SQLite
file in ``DATA_DIR`` is shared by every process on the host, and one UPSERT per hit keeps the fixed
window exact. The counters live in their own file, not the jobs database, so a hit never waits behind
a job's write; they need no durability (``synchronous=OFF``): a crash at worst forgets one window.

Registered with limits under ``deepscreen-sqlite:///<path>`` (importing this module registers it).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from urllib.parse import urlparse

from limits.storage import Storage

_SCHEMA = "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL)"
# A hit in an expired window starts a new one; otherwise it adds to the current one.
_INCR = """
INSERT INTO counters (key, value, expires) VALUES (:key, :amount, :now + :expiry)
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN expires <= :now THEN excluded.value ELSE value + excluded.value END,
    expires = CASE WHEN expires <= :now THEN excluded.expires ELSE expires END
RETURNING value
"""
_PURGE_EVERY = 1000  # hits of a process between deletions of expired windows


class SQLiteStorage(Storage):
    """Fixed-window counters (flask-limiter's default strategy) in one SQLite file per host."""

    STORAGE_SCHEME = ["deepscreen-sqlite"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool):
        path = urlparse(uri or "").path
        if not path:
            raise ValueError(f"a deepscreen-sqlite storage needs a file path, got {uri!r}")
        self.path = path
        self._local = threading.local()
        self._hits = itertools.count(1)
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def _db(self) -> sqlite3.Connection:
        """One connection per thread and process (gunicorn forks, gthread serves from threads)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(_SCHEMA)
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        db = self._db()
        if next(self._hits) % _PURGE_EVERY == 0:
            db.execute("DELETE FROM counters WHERE expires <= ?", (now,))
        return int(db.execute(_INCR, {"key": key, "amount": amount, "now": now, "expiry": expiry}).fetchone()[0])

    def get(self, key: str) -> int:
        row = self._db().execute("SELECT value FROM counters WHERE key = ? AND expires > ?",
                                 (key, time.time())).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        row = self._db().execute("SELECT expires FROM counters WHERE key = ? AND expires > ?",
                                 (key, now)).fetchone()
        return float(row[0]) if row else now

    def check(self) -> bool:
        try:
            self._db().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        return self._db().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        self._db().execute("DELETE FROM counters WHERE key = ?", (key,))
