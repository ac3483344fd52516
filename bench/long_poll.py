"""How many concurrent long polls (``GET /v1/jobs/<id>?wait=30``) one web process holds, and how fast
they are answered when their jobs finish.

For each WEB_THREADS value: one gunicorn process (gthread, as `deepscreen web` runs it) on PostgreSQL +
Redis (service mode) or SQLite without Redis (embedded mode); as many queued jobs as the process lets
wait at once (3/4 of its threads); one waiter per job; then, with every waiter parked:

- the process's resident memory and thread count;
- ordinary requests (``GET /v1/jobs/<id>`` without wait) answered meanwhile (p50/max latency);
- one waiter more than the cap, which must be answered at once;
- every job finished at once (a database UPDATE, then the status cache written and the ids announced
  as a worker does), and each waiter's answer time after the announcement (service) or the UPDATE
  (embedded, where waiters poll the database) (p50/p99/max), each checked to be the finished document.

    .venv/bin/python bench/long_poll.py [--threads 64,256,1024] [--mode service|embedded|both]

Service mode makes (and drops) a PostgreSQL database (BENCH_PG_ADMIN_URL, default
postgres@127.0.0.1:5432) and uses Redis database BENCH_REDIS_DB (default 15) on 127.0.0.1:6379.
The load generator runs on the same machine (one thread per waiter), so figures are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DB', '15')}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def child_pid(parent: int) -> int:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()
    return int(out[0])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def environment(mode: str, folder: Path) -> tuple[dict[str, str], str | None]:
    env = {"DATA_DIR": str(folder), "JWT_SECRET": secrets.token_urlsafe(32), "LOG_LEVEL": "WARNING",
           "STORAGE_URL": f"file://{folder / 'blobs'}", "INFERENCE_QUEUE": "bench-nobody",
           "RATE_LIMIT_DEFAULT": "1000000/minute", "MODEL_REPOSITORY": str(ROOT / "model_repository")}
    if mode == "embedded":
        env.update(DATABASE_URL=f"sqlite:///{folder / 'bench.db'}", REDIS_URL="", BROKER_URL="filesystem://")
        return env, None
    import psycopg

    name = f"deepscreen_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    env.update(DATABASE_URL=f"{base}/{name}", REDIS_URL=REDIS, BROKER_URL=REDIS, RESULT_BACKEND=REDIS)
    return env, name


def apply(env: dict[str, str]) -> None:
    os.environ.update(env)
    from core import status_cache
    from core.db import dispose_engine
    from core.settings import get_settings

    get_settings.cache_clear()
    status_cache.forget()
    dispose_engine()


def make_jobs(count: int) -> list[str]:
    from core.db import session_scope
    from core.models import Job, JobStatus, new_id, utcnow

    ids = [new_id() for _ in range(count)]
    now = utcnow()
    with session_scope() as session:
        session.add_all([Job(id=i, owner="bench", status=JobStatus.QUEUED, models=["nsfw"], attempts=0,
                             queue="bench-nobody", created_at=now, updated_at=now) for i in ids])
    return ids


def finish_all(ids: list[str]) -> float:
    """What a worker does at the end of a batch: the UPDATE, then the cache and the announcement."""
    from sqlalchemy import update

    from core import status_cache
    from core.db import session_scope
    from core.jobs import job_document
    from core.models import Job, JobStatus, utcnow

    now = utcnow()
    with session_scope() as session:
        session.execute(update(Job).where(Job.id.in_(ids)).values(status=JobStatus.SUCCEEDED, finished_at=now,
                                                                  started_at=now, updated_at=now))
    finished = time.monotonic()
    if not status_cache.get_redis():
        return finished  # embedded: the waiters' polls of the database are all there is
    with session_scope() as session:  # a worker holds these documents already; build them before the clock
        docs = [job_document(job) for job in session.query(Job).filter(Job.id.in_(ids))]
    announced = time.monotonic()
    status_cache.put_many(docs)
    return announced


def run_one(mode: str, threads: int) -> dict[str, object]:
    from core.migrate import upgrade
    from core.settings import get_settings
    from core.tokens import issue_token
    from web.long_poll import max_waiters

    folder = Path(tempfile.mkdtemp(prefix="long-poll-bench-"))
    env, database = environment(mode, folder)
    env["WEB_THREADS"] = str(threads)
    apply(env)
    upgrade(env["DATABASE_URL"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "gunicorn.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                             "--worker-class", "gthread", "--threads", str(threads), "--timeout", "60",
                             "--worker-connections", str(threads * 2 + 100), "web.app:create_app()"],
                            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((folder / "gunicorn.log").read_text()[-2000:])
            time.sleep(0.2)
        worker_pid = child_pid(proc.pid)
        headers = {"Authorization": f"Bearer {issue_token(get_settings(), 'bench', ttl_seconds=3600)}"}
        cap = max_waiters(get_settings())
        ids = make_jobs(cap + 1)
        # One request first: core.db builds its engine on first use without a lock, so a burst of
        # first requests on many threads would build several (reported; not this benchmark's subject).
        requests.get(f"{url}/v1/jobs/{ids[0]}", headers=headers, timeout=30).raise_for_status()
        idle = proc_status(worker_pid)
        answers: dict[str, tuple[float, int, str]] = {}
        session = threading.local()

        def wait(job_id: str) -> None:
            http = getattr(session, "http", None) or requests.Session()
            session.http = http
            response = http.get(f"{url}/v1/jobs/{job_id}", params={"wait": "30"}, headers=headers, timeout=60)
            answers[job_id] = (time.monotonic(), response.status_code, response.json().get("status", ""))

        waiters = [threading.Thread(target=wait, args=(job_id,), daemon=True) for job_id in ids[:cap]]
        for t in waiters:
            t.start()
        time.sleep(max(2.0, cap / 200))
        parked = proc_status(worker_pid)
        early = len(answers)
        ordinary = []
        for _ in range(20):
            started = time.monotonic()
            assert requests.get(f"{url}/v1/jobs/{ids[0]}", headers=headers, timeout=30).status_code == 200
            ordinary.append(time.monotonic() - started)
        started = time.monotonic()
        over = requests.get(f"{url}/v1/jobs/{ids[cap]}", params={"wait": "30"}, headers=headers, timeout=60)
        over_cap = time.monotonic() - started
        announced = finish_all(ids[:cap])
        for t in waiters:
            t.join(40)
        lags = [answers[i][0] - announced for i in ids[:cap] if i in answers]
        correct = sum(1 for i in ids[:cap] if answers.get(i, (0, 0, ""))[1:] == (200, "succeeded"))
        return {
            "mode": mode, "threads": threads, "waiters": cap, "answered_early": early, "answered": len(lags),
            "correct": correct,
            "rss_idle_mib": int(idle["VmRSS"].split()[0]) / 1024,
            "rss_parked_mib": int(parked["VmRSS"].split()[0]) / 1024,
            "os_threads_parked": int(parked["Threads"]),
            "ordinary_p50_ms": statistics.median(ordinary) * 1000, "ordinary_max_ms": max(ordinary) * 1000,
            "over_cap_ms": over_cap * 1000, "over_cap_retry_after": over.headers.get("Retry-After"),
            "wake_p50_ms": statistics.median(lags) * 1000 if lags else None,
            "wake_p99_ms": pct(lags, 0.99) * 1000 if lags else None,
            "wake_max_ms": max(lags) * 1000 if lags else None,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if database:
            import psycopg

            from core.db import dispose_engine

            dispose_engine()
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="64,256,1024", help="WEB_THREADS values, one run each")
    parser.add_argument("--mode", choices=["service", "embedded", "both"], default="both")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    modes = ["service", "embedded"] if args.mode == "both" else [args.mode]
    rows = [run_one(mode, int(t)) for mode in modes for t in args.threads.split(",")]
    print(f"\nlong polls held by ONE gunicorn gthread process ({os.cpu_count()} CPUs, load generator on the same "
          f"machine), run {uuid.uuid4().hex[:6]}")
    print("| mode | WEB_THREADS | waiters held | all answered right | RSS idle → parked (MiB) | OS threads "
          "| ordinary request p50 / max (ms) | over-cap answer (ms) | wake p50 / p99 / max (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['threads']} | {r['waiters']} | {r['correct']}/{r['waiters']} "
              f"(early {r['answered_early']}) | {r['rss_idle_mib']:.0f} → {r['rss_parked_mib']:.0f} "
              f"| {r['os_threads_parked']} | {r['ordinary_p50_ms']:.0f} / {r['ordinary_max_ms']:.0f} "
              f"| {r['over_cap_ms']:.0f} (Retry-After {r['over_cap_retry_after']}) "
              f"| {r['wake_p50_ms']:.0f} / {r['wake_p99_ms']:.0f} / {r['wake_max_ms']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
