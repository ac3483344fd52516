"""Shared helpers for the fault tests (and bench/worker_kills.py): a slow model repository, a
worker on its own queue, service outages, and the "nothing lost" checks.

Every wait here is bounded in time; every outage helper restores the service in a ``finally``.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.support.processes import Worker, pid_alive, wait_for

FAULT_QUEUE = "faults"
SLOW_MODEL = "slow"
TERMINAL = ("succeeded", "failed")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", str(REDIS_PORT),
               "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


def build_slow_repo(source: Path, dest: Path) -> Path:
    """A model repository holding ``slow/1``: the real NSFW model files (linked) under the ``slow``
    pipeline of tests/faults/slow_model.py, which pauses before inference."""
    from ml.manifest import Manifest
    from ml.repository import ModelRepository

    live = ModelRepository(source).manifest("nsfw")
    target = dest / SLOW_MODEL / "1"
    if not target.exists():
        shutil.copytree(live.directory, target, copy_function=os.symlink)
        (target / "manifest.json").unlink()  # a link: rewrite a copy, never the source manifest
        manifest = Manifest.load(live.directory)
        manifest.name, manifest.version, manifest.pipeline, manifest.directory = SLOW_MODEL, "1", "slow", target
        manifest.description = "test-only: NSFW after a pause (tests/faults/slow_model.py)"
        manifest.save()
    return dest


def fault_env(base: dict[str, str], repo: Path, **overrides: object) -> dict[str, str]:
    """The service environment, pointed at the slow repository, the fault queue and a Redis database
    of its own (TEST_FAULT_REDIS_DB, default 13): other test sessions flush theirs at start and end."""
    db = os.environ.get("TEST_FAULT_REDIS_DB", "13")
    redis_url = base["REDIS_URL"].rsplit("/", 1)[0] + f"/{db}"
    env = {
        **base, "BROKER_URL": redis_url, "REDIS_URL": redis_url, "RESULT_BACKEND": redis_url,
        "MODEL_REPOSITORY": str(repo), "INFERENCE_QUEUE": FAULT_QUEUE, "DEFAULT_MODELS": SLOW_MODEL,
        "FAULT_SCREEN_SECONDS": "0.5", "REQUEUE_QUEUED_AFTER_SECONDS": "2", "STUCK_AFTER_SECONDS": "30",
    }
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    return env


class FaultWorker(Worker):
    """A prefork worker (one pool process) on the fault queue only, with the slow pipeline loaded."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str = "faults") -> None:
        super().__init__(env, log_path, concurrency=1, queues=FAULT_QUEUE, name=name)
        self.argv += ["--include", "tests.faults.slow_model"]


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 10, interval=0.02, what=f"process {pid} to die")


def image(seed: int) -> bytes:
    """A distinct JPEG per seed (distinct bytes: no known-verdict shortcut)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def post_job(client, headers: dict[str, str], seed: int, models: str = SLOW_MODEL):  # type: ignore[no-untyped-def]
    return client.post("/v1/jobs", headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(image(seed)), f"{seed}.jpg"), "models": models})


def submit_jobs(client, headers: dict[str, str], seeds: range) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for seed in seeds:
        response = post_job(client, headers, seed)
        assert response.status_code == 202, response.get_data(as_text=True)
        ids.append(response.get_json()["id"])
    return ids


@dataclass(frozen=True)
class Row:
    status: str
    attempts: int
    error_code: str | None
    results: int
    started_at: datetime | None = None
    lease_owner: str | None = None

    def held_by(self, pid: int) -> bool:
        """Running under a lease of process ``pid`` (lease owners are ``host:pid:boot``)."""
        return self.status == "running" and bool(self.lease_owner) and self.lease_owner.split(":")[1] == str(pid)


def rows(job_ids: list[str]) -> dict[str, Row]:
    """The database's view (the source of truth) of each job and its result count."""
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.models import Job, Result

    with session_scope() as session:
        counts = dict(session.execute(
            select(Result.job_id, func.count()).where(Result.job_id.in_(job_ids)).group_by(Result.job_id)
        ).all())
        jobs = session.scalars(select(Job).where(Job.id.in_(job_ids))).all()
        return {j.id: Row(j.status, j.attempts, j.error_code, counts.get(j.id, 0), j.started_at, j.lease_owner)
                for j in jobs}


@dataclass
class KillStats:
    kills: int = 0  # SIGKILLs sent to a pool process that had claimed jobs
    mid_task: int = 0  # of those, some job was still running afterwards: the kill cut a batch mid-way
    hits: dict[str, int] = field(default_factory=dict)  # job id -> kills that cut it mid-way


def kill_mid_task(worker: FaultWorker, job_ids: list[str], target: int, timeout: float,
                  max_kills_per_job: int = 2, rng: random.Random | None = None,
                  stats: KillStats | None = None) -> KillStats:
    """SIGKILL the pool process while it screens some of ``job_ids``, until ``target`` mid-task kills
    (or the jobs run out, or ``timeout``).

    A delivery holds a whole batch, so a kill costs every job of that batch an attempt: a kill is sent
    only while every running job has been hit fewer than ``max_kills_per_job`` times, so no job is
    killed into ``attempts_exhausted`` and the test can demand that every job succeeds."""

    rng = rng or random.Random()
    stats = stats or KillStats()
    deadline = time.monotonic() + timeout
    pid = worker.pool_pid()
    while stats.mid_task < target and time.monotonic() < deadline:
        current = rows(job_ids)
        if all(r.status in TERMINAL for r in current.values()):
            break
        held = [job_id for job_id, r in current.items() if r.held_by(pid)]
        if not held or any(stats.hits.get(j, 0) >= max_kills_per_job for j in held):
            time.sleep(0.02)
            continue
        time.sleep(rng.uniform(0.02, 0.3))  # somewhere inside the model's pause
        held = [job_id for job_id, r in rows(job_ids).items() if r.held_by(pid)]
        if any(stats.hits.get(j, 0) >= max_kills_per_job for j in held):
            continue
        kill9(pid)
        # What the kill cut, read after it: the dead process's leases stay until a neighbour releases
        # them, and it may have claimed more between the look above and the kill.
        cut = set(held) | {job_id for job_id, r in rows(job_ids).items() if r.held_by(pid)}
        stats.kills += 1
        for job_id in cut:
            stats.hits[job_id] = stats.hits.get(job_id, 0) + 1
        stats.mid_task += bool(cut)
        pid = worker.pool_pid()
    return stats


def broker_enqueue(celery) -> Callable[[str], None]:  # type: ignore[no-untyped-def]
    """What beat's sweep task does with a job id (a wake-up), through the given Celery app."""
    from workers.celery_app import TASK_SCREEN

    return lambda job_id: celery.send_task(TASK_SCREEN, args=[job_id], ignore_result=True)


def wait_terminal(job_ids: list[str], timeout: float, enqueue: Callable[[str], None] | None = None,
                  sweep_every: float = 1.0, sweeps_done: list[dict[str, int]] | None = None) -> dict[str, Row]:
    """Poll the database until every job is terminal, running beat's sweep meanwhile if ``enqueue``
    is given (each sweep's counts go to ``sweeps_done``). Raises TimeoutError naming the stragglers."""
    from workers import sweeps

    deadline, next_sweep = time.monotonic() + timeout, 0.0
    while True:
        current = rows(job_ids)
        if len(current) == len(job_ids) and all(r.status in TERMINAL for r in current.values()):
            return current
        if time.monotonic() > deadline:
            pending = {k: v for k, v in current.items() if v.status not in TERMINAL}
            raise TimeoutError(f"{len(pending)} of {len(job_ids)} jobs not terminal: {pending}")
        if enqueue is not None and time.monotonic() >= next_sweep:
            try:
                counts = sweeps.sweep(enqueue, lambda _job_id: None)
                if sweeps_done is not None:
                    sweeps_done.append(counts)
            except Exception:  # the database may still be coming back; the next round retries
                pass
            next_sweep = time.monotonic() + sweep_every
        time.sleep(0.2)


def assert_nothing_lost(client, headers: dict[str, str], job_ids: list[str], models: int = 1,  # type: ignore[no-untyped-def]
                        allowed_failures: tuple[str, ...] = ()) -> dict[str, Row]:
    """Every job is terminal in the database and through the API (cache included); a succeeded job
    has exactly one result per model, a failed one none and an allowed error code; every job's bytes
    are still in the object store."""
    from core.db import session_scope
    from core.models import Job
    from core.object_store import get_store

    final = rows(job_ids)
    assert sorted(final) == sorted(job_ids), "a job row is missing"
    for job_id, row in final.items():
        assert row.status in TERMINAL, (job_id, row)
        if row.status == "succeeded":
            assert row.results == models, (job_id, row)
        else:
            assert row.results == 0 and row.error_code in allowed_failures, (job_id, row)
        body = client.get(f"/status/{job_id}", headers=headers).get_json()
        assert body["status"] == row.status and len(body["results"]) == row.results, (body, row)
    store = get_store()
    with session_scope() as session:
        for job_id in job_ids:
            job = session.get(Job, job_id)
            assert job is not None and job.media is not None and store.exists(job.media.storage_key), job_id
    return final


def duplicate_results() -> list[tuple[str, str, str, int]]:
    """(job, model, version, count) for any triple stored more than once, across the whole database."""
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.models import Result

    with session_scope() as session:
        query = (select(Result.job_id, Result.model, Result.model_version, func.count())
                 .group_by(Result.job_id, Result.model, Result.model_version).having(func.count() > 1))
        return [tuple(r) for r in session.execute(query).all()]  # type: ignore[misc]


def flush_fault_redis(redis_url: str) -> None:
    """Empty the fault tests' own Redis database: no message a sweep sent twice outlives a module."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()


# --- outages --------------------------------------------------------------------------------------

def redis_up() -> bool:
    """A bare PING over a socket: redis-py's client retries refused connections for seconds."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_down() -> Iterator[None]:
    """Shut Redis down without saving (no persistence: every queue, cache and unacked message is
    gone), and start it again on the way out."""
    subprocess.run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "shutdown", "nosave"],
                   capture_output=True, timeout=10)
    try:
        wait_for(lambda: not redis_up(), 10, interval=0.05, what="Redis to stop")
        yield
    finally:
        if not redis_up():
            subprocess.run(REDIS_START, check=True, capture_output=True, timeout=10)
        wait_for(redis_up, 20, interval=0.05, what="Redis to start")


def _pg_cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], timeout=10).returncode == 0


@contextmanager
def postgres_down() -> Iterator[None]:
    """Stop PostgreSQL (fast: open connections are cut) and always start it again."""
    subprocess.run([*_pg_cluster(), "stop", "-m", "fast"], check=True, capture_output=True, timeout=60)
    try:
        wait_for(lambda: not pg_ready(), 20, what="PostgreSQL to stop")
        yield
    finally:
        if not pg_ready():
            subprocess.run([*_pg_cluster(), "start"], capture_output=True, timeout=60)
        wait_for(pg_ready, 60, interval=0.2, what="PostgreSQL to start")
