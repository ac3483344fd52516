"""The queue's database statements alone: client CPU per job to submit, claim and record, on PostgreSQL
and SQLite (the two modes' databases), in batches as a worker takes them.

    .venv/bin/python bench/queue_sql.py [--jobs 800] [--batch 8] [--databases postgresql,sqlite]

It calls the plain functions the web and the workers call (core.submissions.submit,
core.job_queue.claim_batch and record_batch) against a fresh database, with an object store that
keeps nothing (only the SQL is measured), and reports this process's CPU milliseconds per job for each
step. The database server's own CPU is not in these figures (bench/road.py counts it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Shared, header, own_cpu_seconds, table
from core.object_store import ObjectStore

POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class NullStore(ObjectStore):
    """Keeps no bytes: the benchmark measures the statements, not the object store."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        return None

    def get(self, key: str) -> bytes:
        raise KeyError(key)

    def exists(self, key: str) -> bool:
        return False

    def delete(self, key: str) -> None:
        return None

    def ping(self) -> None:
        return None


def fresh_database(kind: str, folder: Path) -> tuple[str, Callable[[], None]]:
    """A new empty database of ``kind``: its URL and a way to drop it."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'queue.sqlite'}", lambda: None
    import psycopg

    name = f"bench_queue_{uuid.uuid4().hex[:8]}"
    admin = POSTGRES.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from core.db import dispose_engine

        dispose_engine()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return POSTGRES.rsplit("/", 1)[0] + f"/{name}", drop


def measure(url: str, jobs: int, batch: int) -> dict[str, float]:
    """CPU ms per job of each step, after one warm-up round (statement caches, connections)."""
    from core import job_queue
    from core.db import dispose_engine
    from core.jobs import Verdict
    from core.migrate import upgrade
    from core.settings import get_settings
    from core.submissions import NewMedia, submit

    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    dispose_engine()
    upgrade(url)
    owner, store = job_queue.worker_identity(), NullStore()
    cpu = {"submit": 0.0, "claim": 0.0, "record": 0.0}
    rounds = max(1, jobs // batch)
    for n in range(rounds + 1):  # round 0 warms up and is not counted
        start = time.process_time()
        ids = []
        for i in range(batch):
            data = f"{url}/{n}/{i}".encode()
            media = NewMedia(data, hashlib.sha256(data).hexdigest(), "jpeg", "image", 8, 8)
            ids.append(submit(store, "bench", media, None, {"deepfake": "1"}).doc["id"])
        submitted = time.process_time()
        claimed = job_queue.claim_batch(owner, batch, 60, 3, ids[0], explain=False)
        got = time.process_time()
        outcomes = [job_queue.Outcome(j, verdicts=[Verdict("deepfake", "1", "no_face", None, {}, {"faces": []})])
                    for j in claimed.jobs]
        recorded = job_queue.record_batch(owner, outcomes, 3, 12)
        done = time.process_time()
        if len(claimed.jobs) != batch or len(recorded.documents) != batch:
            raise RuntimeError(f"claimed {len(claimed.jobs)}, recorded {len(recorded.documents)} of {batch}")
        if n:
            cpu["submit"] += submitted - start
            cpu["claim"] += got - submitted
            cpu["record"] += done - got
    dispose_engine()
    return {step: 1000 * seconds / (rounds * batch) for step, seconds in cpu.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=800)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--databases", default="postgresql,sqlite")
    args = parser.parse_args(argv)
    os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="bench-queue-"))
    shared = Shared().start()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as folder:
        for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
            url, drop = fresh_database(kind, Path(folder))
            try:
                ms = measure(url, args.jobs, args.batch)
            finally:
                drop()
            rows.append([kind, args.batch, ms["submit"], ms["claim"], ms["record"], sum(ms.values())])
    shared.stop(own_cpu_seconds())
    print(header(f"queue SQL: client CPU per job, {args.jobs} jobs in batches of {args.batch}", shared))
    print(table(["database", "batch", "submit ms/job", "claim ms/job", "record ms/job", "total ms/job"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
