"""The jobs table as the queue of record, on real PostgreSQL (service mode) and SQLite (embedded):
batch claims under leases, disjoint concurrent claims, isolation of jobs whose worker died, one-
transaction recording that only the lease holder can do, expiry and release of dead holders."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core import job_queue, repairs
from core.db import session_scope
from core.job_queue import FirstJob, Outcome
from core.jobs import Verdict
from core.models import Job, JobStatus, Media, Result, utcnow
from tests.support.environment import apply_env


@pytest.fixture(params=["postgresql", "sqlite"])
def queue_db(request: pytest.FixtureRequest, service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Both databases the README offers; each test starts with an empty jobs table."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
        with apply_env({"DATABASE_URL": url}):
            from core.migrate import upgrade

            upgrade(url)
            yield request.param
        return
    with session_scope() as session:
        session.execute(Result.__table__.delete())
        session.execute(Job.__table__.delete())
    yield request.param
    with session_scope() as session:  # media rows of these tests have no blobs: leave none behind
        ids = select(Job.id).where(Job.media_sha256.in_(select(Media.sha256).where(Media.storage_key.like("k/%"))))
        session.execute(Result.__table__.delete().where(Result.job_id.in_(ids)))
        session.execute(Job.__table__.delete().where(Job.id.in_(ids)))
        session.execute(Media.__table__.delete().where(Media.storage_key.like("k/%")))


def make_jobs(count: int, **values: object) -> list[str]:
    ids = []
    now = utcnow()
    with session_scope() as session:
        for i in range(count):
            sha = uuid.uuid4().hex * 2
            session.add(Media(sha256=sha, size=1, format="png", kind="image", storage_key=f"k/{sha}"))
            session.flush()
            job = Job(owner="t", media_sha256=sha, models=["nsfw"], created_at=now + timedelta(milliseconds=i),
                      updated_at=now, **values)
            session.add(job)
            session.flush()
            ids.append(job.id)
    return ids


def row(job_id: str) -> Job:
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def verdict(score: float = 0.5) -> Verdict:
    return Verdict("nsfw", "1", "safe", score, {"nsfw": score}, {}, {"status": "not_validated_on_real_data"})


def test_a_delivery_claims_its_job_first_then_the_oldest_queued(queue_db: str) -> None:
    ids = make_jobs(6)
    claimed = job_queue.claim_batch("w1", limit=4, lease_seconds=30, max_attempts=3, first=ids[5])
    assert claimed.first is FirstJob.CLAIMED
    assert {j.id for j in claimed.jobs} == {ids[5], ids[0], ids[1], ids[2]}
    for job in claimed.jobs:
        stored = row(job.id)
        assert stored.status == "running" and stored.attempts == 1 and stored.lease_owner == "w1"
        assert job.media is not None and job.storage_key == f"k/{job.media['sha256']}"
    # The same message delivered again: its job is held by w1 → not claimed twice.
    again = job_queue.claim_batch("w2", limit=4, lease_seconds=30, max_attempts=3, first=ids[5])
    assert again.first is FirstJob.LEASED
    assert {j.id for j in again.jobs} == {ids[3], ids[4]}


def test_concurrent_claims_are_disjoint(queue_db: str) -> None:
    ids = make_jobs(40)
    got: dict[str, list[str]] = {}

    def claim(owner: str) -> None:
        mine: list[str] = []
        while True:
            batch = job_queue.claim_batch(owner, limit=3, lease_seconds=30, max_attempts=3).jobs
            if not batch:
                break
            mine += [j.id for j in batch]
        got[owner] = mine

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [job_id for mine in got.values() for job_id in mine]
    assert sorted(everything) == sorted(ids)  # every job once, none twice


def test_recording_a_batch_is_one_transaction_by_the_lease_holder(queue_db: str) -> None:
    ids = make_jobs(4, callback_url="http://127.0.0.1:9/hook")
    jobs = job_queue.claim_batch("w1", 4, 30, 3).jobs
    by_id = {j.id: j for j in jobs}
    outcomes = [
        Outcome(by_id[ids[0]], verdicts=[verdict(0.1)]),
        Outcome(by_id[ids[1]], error=("corrupt_image", "damaged")),
        Outcome(by_id[ids[2]], error=("storage_unavailable", "down"), transient=True),
        Outcome(by_id[ids[3]], error=("internal_error", "boom"), requeue=True),
    ]
    recorded = job_queue.record_batch("w1", outcomes, max_attempts=3, max_retries=12)
    assert row(ids[0]).status == "succeeded" and row(ids[0]).results[0].score == pytest.approx(0.1)
    assert row(ids[0]).results[0].validation == {"status": "not_validated_on_real_data"}
    assert row(ids[1]).status == "failed" and row(ids[1]).error_code == "corrupt_image"
    transient = row(ids[2])
    assert transient.status == "queued" and transient.attempts == 0 and transient.retries == 1
    assert transient.available_at is not None and transient.lease_owner is None
    crashed = row(ids[3])
    assert crashed.status == "queued" and crashed.attempts == 1 and crashed.error_code == "internal_error"
    assert {d["id"]: d["status"] for d in recorded.documents} == {ids[0]: "succeeded", ids[1]: "failed"}
    assert sorted(recorded.webhooks) == sorted(ids[:2])
    assert row(ids[0]).webhook_status == "pending"
    assert recorded.requeued[ids[2]] == pytest.approx(1.0) and recorded.requeued[ids[3]] == 0.0
    doc = next(d for d in recorded.documents if d["id"] == ids[0])
    assert doc["results"]["nsfw"]["score"] == pytest.approx(0.1) and doc["media"]["format"] == "png"


def test_a_worker_that_lost_its_lease_cannot_record(queue_db: str) -> None:
    [job_id] = make_jobs(1)
    [job] = job_queue.claim_batch("slow", 1, 30, 3).jobs
    with session_scope() as session:  # the lease ran out; the sweep re-queued it; another worker took it
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    requeued, _ = repairs.expire_leases(3, timedelta(minutes=10))
    assert requeued == [job_id]
    taken = job_queue.claim_batch("fast", 1, 30, 3, first=job_id)
    assert taken.first is FirstJob.CLAIMED
    job_queue.record_batch("slow", [Outcome(job, error=("corrupt_image", "late"))], 3, 12)
    assert row(job_id).status == "running" and row(job_id).lease_owner == "fast"
    job_queue.record_batch("fast", [Outcome(taken.jobs[0], verdicts=[verdict()])], 3, 12)
    assert row(job_id).status == "succeeded"


def test_a_job_whose_worker_died_is_screened_alone_and_its_attempts_are_bounded(queue_db: str) -> None:
    ids = make_jobs(5)
    poison = ids[0]
    for attempt in range(1, 4):
        claimed = job_queue.claim_batch(f"w{attempt}", 5, 30, 3, first=poison)
        assert claimed.first is FirstJob.CLAIMED
        if attempt == 1:
            assert len(claimed.jobs) == 5  # a fresh job takes peers
            job_queue.record_batch("w1", [Outcome(j, verdicts=[verdict()]) for j in claimed.jobs if j.id != poison],
                                   3, 12)
        else:
            assert [j.id for j in claimed.jobs] == [poison]  # it has killed a worker before: alone
        with session_scope() as session:  # its worker is SIGKILLed: the lease runs out
            session.execute(update(Job).where(Job.id == poison).values(lease_expires_at=utcnow()))
        repairs.expire_leases(3, timedelta(minutes=10))
    assert row(poison).status == "failed" and row(poison).error_code == "attempts_exhausted"
    assert all(row(i).status == "succeeded" for i in ids[1:])  # the neighbours lost nothing


def test_exhausted_first_job_fails_and_terminal_ones_are_done(queue_db: str) -> None:
    [spent, finished] = make_jobs(2)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == spent).values(attempts=3))
        session.execute(update(Job).where(Job.id == finished).values(status=JobStatus.SUCCEEDED))
    assert job_queue.claim_batch("w", 1, 30, 3, first=spent).first is FirstJob.EXHAUSTED
    assert row(spent).status == "failed" and row(spent).error_code == "attempts_exhausted"
    assert job_queue.claim_batch("w", 1, 30, 3, first=finished).first is FirstJob.DONE
    assert job_queue.claim_batch("w", 1, 30, 3, first=str(uuid.uuid4())).first is FirstJob.MISSING


def test_leases_are_renewed_and_a_dead_local_holder_is_released_at_once(queue_db: str) -> None:
    ids = make_jobs(3)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{__import__('socket').gethostname()}:{int(child.stdout)}:abc"
    alive = job_queue.worker_identity()
    assert job_queue.owner_is_dead_here(dead) and not job_queue.owner_is_dead_here(alive)
    job_queue.claim_batch(dead, 2, 30, 3)
    job_queue.claim_batch(alive, 1, 1, 3)
    before = row(ids[2]).lease_expires_at
    assert job_queue.extend_leases(alive, [ids[2], ids[0]], 60) == 1  # only what it holds
    assert row(ids[2]).lease_expires_at > before
    assert repairs.dead_local_owners() == [dead]
    assert sorted(job_queue.release_owner(dead, 3)) == sorted(ids[:2])
    assert all(row(i).status == "queued" and row(i).error_code == "worker_lost" for i in ids[:2])


def test_lost_messages_and_pending_webhooks_are_found(queue_db: str) -> None:
    [lost, fresh, later] = make_jobs(3)
    long_ago = utcnow() - timedelta(hours=1)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id.in_([lost, later])).values(updated_at=long_ago))
        session.execute(update(Job).where(Job.id == later).values(available_at=utcnow() + timedelta(hours=1)))
        session.execute(update(Job).where(Job.id == fresh).values(
            status=JobStatus.SUCCEEDED, webhook_status="pending", webhook_updated_at=long_ago))
    assert repairs.lost_messages(timedelta(seconds=30)) == [lost]  # `later` is backing off
    assert repairs.pending_webhooks(timedelta(minutes=5)) == [fresh]
    assert repairs.pending_webhooks(timedelta(minutes=5)) == []  # touched: not re-sent at once
    repairs.mark_webhook(fresh, "sent")
    with session_scope() as session:
        assert session.scalar(select(Job.webhook_status).where(Job.id == fresh)) == "sent"


def test_a_worker_claims_only_the_jobs_routed_to_its_queues(queue_db: str) -> None:
    [gpu, cpu] = make_jobs(2)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == gpu).values(queue="gpu"))
    assert [j.id for j in job_queue.claim_batch("w", 8, 30, 3, queues=["inference"]).jobs] == [cpu]
    assert [j.id for j in job_queue.claim_batch("g", 8, 30, 3, queues=["gpu", "inference"]).jobs] == [gpu]
