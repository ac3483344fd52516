"""The embedded mode's rate-limit storage: one count per key across processes, fixed windows that
end, and the limits API flask-limiter drives (the gunicorn test is in test_rate_limits.py)."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from web.rate_limit_store import SQLiteStorage


def _hit_many(uri: str, times: int) -> None:
    limiter = FixedWindowRateLimiter(storage_from_string(uri))
    for _ in range(times):
        limiter.hit(parse("1000/minute"), "shared")


def test_processes_share_one_count(tmp_path: Path) -> None:
    uri = f"deepscreen-sqlite://{tmp_path / 'limits.db'}"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_hit_many, args=(uri, 50)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    limiter = FixedWindowRateLimiter(storage_from_string(uri))
    stats = limiter.get_window_stats(parse("1000/minute"), "shared")
    assert stats.remaining == 1000 - 150  # every process's hits, none lost to a race


def test_the_limit_refuses_then_a_new_window_allows(tmp_path: Path) -> None:
    storage = storage_from_string(f"deepscreen-sqlite://{tmp_path / 'limits.db'}")
    assert isinstance(storage, SQLiteStorage) and storage.check()
    limiter, item = FixedWindowRateLimiter(storage), parse("3/second")
    assert [limiter.hit(item, "k") for _ in range(4)] == [True, True, True, False]
    assert limiter.hit(item, "other")  # another key has its own count
    reset = limiter.get_window_stats(item, "k").reset_time
    assert time.time() < reset <= time.time() + 1
    time.sleep(max(0.0, reset - time.time()) + 0.05)
    assert limiter.hit(item, "k")  # the window ended: a new one starts at 1
    assert limiter.get_window_stats(item, "k").remaining == 2


def test_cost_clear_and_reset(tmp_path: Path) -> None:
    storage = SQLiteStorage(f"deepscreen-sqlite://{tmp_path / 'sub' / 'limits.db'}")  # makes the folder
    assert storage.incr("a", 60, amount=5) == 5 and storage.incr("a", 60) == 6
    assert storage.get("a") == 6 and storage.get("missing") == 0
    storage.clear("a")
    assert storage.get("a") == 0
    storage.incr("b", 60)
    storage.incr("c", 60)
    assert storage.reset() == 2 and storage.get("b") == 0
