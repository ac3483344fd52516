"""State transitions on real PostgreSQL: conditional, idempotent, bounded."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from core import jobs, status_cache
from core.db import session_scope
from core.models import Job, Media, Result


def make_job(**kw) -> str:  # type: ignore[no-untyped-def]
    sha = uuid.uuid4().hex * 2
    with session_scope() as session:
        session.add(Media(sha256=sha, size=1, format="png", kind="image", storage_key=f"k/{sha}"))
        session.flush()
        job = Job(owner="t", media_sha256=sha, models=["nsfw"], **kw)
        session.add(job)
        session.flush()
        return job.id


def verdict(score: float = 0.5) -> jobs.Verdict:
    return jobs.Verdict("nsfw", "1", "safe", score, {"nsfw": score}, {})


def test_claim_counts_attempts_and_finishes_once(service_env) -> None:  # type: ignore[no-untyped-def]
    job_id = make_job()
    assert jobs.claim(job_id, 3) is jobs.Claim.CLAIMED
    assert jobs.succeed(job_id, [verdict(0.1)])
    assert jobs.claim(job_id, 3) is jobs.Claim.DONE  # a duplicate delivery does nothing
    assert not jobs.succeed(job_id, [verdict(0.9)])
    assert not jobs.fail(job_id, "x", "late failure cannot overwrite success")
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.status == "succeeded" and job.attempts == 1
        assert [r.score for r in job.results] == [0.1]


def test_results_are_unique_per_job_model_version(service_env) -> None:  # type: ignore[no-untyped-def]
    job_id = make_job()
    with session_scope() as session:
        for _ in range(3):
            jobs.record_result(session, job_id, verdict())
    with session_scope() as session:
        count = session.scalar(select(func.count()).select_from(Result).where(Result.job_id == job_id))
    assert count == 1


def test_redelivery_reclaims_a_running_job_until_attempts_run_out(service_env) -> None:  # type: ignore[no-untyped-def]
    job_id = make_job()
    assert jobs.claim(job_id, 2) is jobs.Claim.CLAIMED
    assert jobs.claim(job_id, 2) is jobs.Claim.CLAIMED  # the worker died; the broker redelivered
    assert jobs.claim(job_id, 2) is jobs.Claim.EXHAUSTED
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert (job.status, job.error_code, job.attempts) == ("failed", "attempts_exhausted", 2)


def test_requeue_and_cache(service_env) -> None:  # type: ignore[no-untyped-def]
    job_id = make_job()
    jobs.claim(job_id, 3)
    assert jobs.requeue(job_id, "storage_unavailable", "s3 down")
    cached = status_cache.get(job_id)
    assert cached["status"] == "queued" and cached["error"]["code"] == "storage_unavailable"
    assert jobs.claim(job_id, 3) is jobs.Claim.CLAIMED
    assert jobs.succeed(job_id, [verdict()])
    cached = status_cache.get(job_id)
    assert cached["status"] == "succeeded" and cached["error"] is None and cached["attempts"] == 2


def test_missing_job(service_env) -> None:  # type: ignore[no-untyped-def]
    assert jobs.claim(str(uuid.uuid4()), 3) is jobs.Claim.MISSING
