"""kill -9 a Celery worker's pool process mid-task, over and over, and count what was lost.

Starts its own services around the given PostgreSQL and Redis (a fresh database, a Redis database
number of its own, moto's S3 server unless --s3-endpoint is given), its own worker on the fault
queue with the slow test pipeline (tests/faults/slow_model.py), submits jobs through the real web
app, kills the pool process while it screens (at most twice per job, so every job can still
succeed within MAX_ATTEMPTS=3), then waits for every job and prints a summary. Exit status 1 when
anything was lost or duplicated.

Batch semantics (issue 7): a pool process holds a whole batch of leased jobs (up to BATCH_MAX), so
one kill cuts every job of that batch: each of them must come back with exactly one more attempt
(``unexplained_attempts`` counts the attempts beyond 1 + the kills seen to cut the job; a job the
planner thread claimed between this script's look and the kill shows up there, so it is reported,
not failed).

    .venv/bin/python bench/worker_kills.py --kills 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.faults.fault_support import (  # noqa: E402
    TERMINAL,
    FaultWorker,
    KillStats,
    broker_enqueue,
    build_slow_repo,
    duplicate_results,
    fault_env,
    flush_fault_redis,
    kill_mid_task,
    rows,
    submit_jobs,
    wait_terminal,
)
from tests.support.environment import apply_env  # noqa: E402
from tests.support.processes import MotoServer  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="mid-task kills to land")
    parser.add_argument("--batch", type=int, default=10, help="jobs submitted at a time")
    parser.add_argument("--delay", type=float, default=0.4, help="seconds the slow model pauses per job")
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a role that may CREATE DATABASE; the bench's database is dropped at the end")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="broker + cache (flushed)")
    parser.add_argument("--s3-endpoint", default="", help="an S3 endpoint with bucket deepscreen-bench; "
                        "default: start moto's server")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="worker-kills-"))
    name = f"deepscreen_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = args.pg_admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    moto = None if args.s3_endpoint else MotoServer(free_port(), free_port())
    try:
        if moto:
            moto.launch()
        from ml.build.builders import builder

        builder("nsfw")(work / "models", False)
        base = {
            "DATABASE_URL": db_url, "REDIS_URL": args.redis_url, "STORAGE_URL": "s3://deepscreen-bench/media",
            "S3_ENDPOINT_URL": args.s3_endpoint or moto.url, "AWS_ACCESS_KEY_ID": "testing",  # type: ignore[union-attr]
            "AWS_SECRET_ACCESS_KEY": "testing", "DATA_DIR": str(work / "data"),
            "JWT_SECRET": secrets.token_urlsafe(32), "LOG_LEVEL": "WARNING",
            "RATE_LIMIT_DEFAULT": "100000/minute", "RATE_LIMIT_SUBMIT": "100000/minute",
        }
        os.environ["TEST_FAULT_REDIS_DB"] = args.redis_url.rsplit("/", 1)[1]  # fault_env's Redis database
        env = fault_env(base, build_slow_repo(work / "models", work / "slow"), fault_screen_seconds=args.delay,
                        stuck_after_seconds=60, requeue_queued_after_seconds=30)
        with apply_env(env):
            return run(args, env, work)
    finally:
        if moto:
            moto.shutdown()
        with psycopg.connect(args.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(args: argparse.Namespace, env: dict[str, str], work: Path) -> int:
    from core.migrate import upgrade
    from core.object_store import get_store
    from core.settings import get_settings
    from core.tokens import issue_token
    from web.app import create_app

    upgrade(env["DATABASE_URL"])
    get_store().ensure_bucket()  # type: ignore[attr-defined]
    flush_fault_redis(env["BROKER_URL"])
    app = create_app()
    client = app.test_client()
    auth = {"Authorization": f"Bearer {issue_token(get_settings(), 'bench-worker-kills')}"}
    worker = FaultWorker(env, work / "worker.log", name="bench-kills")
    worker.start()
    rng, stats, job_ids = random.Random(args.seed), KillStats(), []
    started = time.monotonic()
    try:
        while stats.mid_task < args.kills and time.monotonic() - started < args.timeout:
            batch = submit_jobs(client, auth, range(10**6 + len(job_ids), 10**6 + len(job_ids) + args.batch))
            job_ids += batch
            kill_mid_task(worker, batch, args.kills, timeout=args.timeout, rng=rng, stats=stats)
            print(f"  {stats.mid_task} mid-task kills, {len(job_ids)} jobs, "
                  f"{time.monotonic() - started:.0f} s", file=sys.stderr)
        kill_phase = time.monotonic() - started
        try:
            final = wait_terminal(job_ids, timeout=300, enqueue=broker_enqueue(app.extensions["deepscreen.celery"]),
                                  sweep_every=10)
        except TimeoutError:
            final = rows(job_ids)
    finally:
        worker.stop()
        flush_fault_redis(env["BROKER_URL"])
    terminal = [r for r in final.values() if r.status in TERMINAL]
    succeeded = [r for r in terminal if r.status == "succeeded"]
    wrong = [r for r in terminal if (r.status == "succeeded") != (r.results == 1)]
    unexplained = sum(max(0, r.attempts - 1 - stats.hits.get(job_id, 0)) for job_id, r in final.items())
    summary = {
        "jobs": len(job_ids), "kills": stats.kills, "mid_task_kills": stats.mid_task,
        "terminal": len(terminal), "succeeded": len(succeeded), "failed": len(terminal) - len(succeeded),
        "failed_codes": sorted({r.error_code for r in terminal if r.status == "failed"}),  # type: ignore[type-var]
        "attempts": sum(r.attempts for r in final.values()),
        "jobs_cut_per_kill": round(sum(stats.hits.values()) / max(1, stats.mid_task), 2),
        "unexplained_attempts": unexplained,
        "duplicates": len(duplicate_results()), "wrong_result_count": len(wrong),
        "lost": len(job_ids) - len(terminal),
        "kill_phase_s": round(kill_phase, 1), "total_s": round(time.monotonic() - started, 1),
        "delay_s": args.delay,
    }
    print(json.dumps(summary, indent=2))
    return 0 if summary["lost"] == 0 and summary["duplicates"] == 0 and not wrong else 1


if __name__ == "__main__":
    raise SystemExit(main())
