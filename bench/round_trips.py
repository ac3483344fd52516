"""Calls a job makes to the servers around it, counted from the servers' side (no project code touched):

- Redis: ``INFO commandstats`` of the bench's own redis-server (calls per command).
- PostgreSQL: the bench database's transactions (``pg_stat_database``) and, per table, index and
  sequential scans and rows inserted / updated / deleted (``pg_stat_user_tables``). Statement counts
  would need pg_stat_statements preloaded, which the shared server does not do.
- S3: the moto server's request log, by HTTP method.

Counted before and after the load; the difference divided by jobs is what each job costs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

Counters = Callable[[], dict[str, float]]
REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) ')


def service_counters(redis_url: str, admin_url: str, database_url: str, database: str, s3_log: Path) -> Counters:
    def counters() -> dict[str, float]:
        import psycopg
        import redis

        time.sleep(1.0)  # PostgreSQL flushes backends' statistics about once a second
        out: dict[str, float] = {}
        commandstats = cast(dict[str, Any], redis.Redis.from_url(redis_url).info("commandstats"))
        for name, stats in commandstats.items():
            out[f"Redis {name.removeprefix('cmdstat_')}"] = float(stats["calls"])
        with psycopg.connect(admin_url, autocommit=True) as conn:
            row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                               (database,)).fetchone()
            out["PostgreSQL transactions"] = float(row[0]) if row else 0.0
        with psycopg.connect(database_url, autocommit=True) as conn:
            for table, scans, ins, upd, dele in conn.execute(
                    "SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_del "
                    "FROM pg_stat_user_tables"):
                out[f"PostgreSQL {table}: scans"] = float(scans)
                out[f"PostgreSQL {table}: rows written"] = float(ins + upd + dele)
        text = s3_log.read_text(errors="replace") if s3_log.exists() else ""
        for method in REQUEST.findall(text):
            out[f"S3 {method}"] = out.get(f"S3 {method}", 0.0) + 1
        return out

    return counters


def per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    keys = sorted(set(before) | set(after))
    deltas = {k: (after.get(k, 0.0) - before.get(k, 0.0)) / jobs for k in keys}
    return {k: v for k, v in deltas.items() if v > 0.005 and not k.endswith((" info", " flushdb"))}
