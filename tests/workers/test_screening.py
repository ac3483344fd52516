"""screen_job as a plain function (no broker) on PostgreSQL + the S3 server, and the beat sweep."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import update

from core import jobs
from core.db import session_scope
from core.models import Job, utcnow
from core.object_store import get_store, key_for
from core.submissions import NewMedia, submit
from tests.conftest import jpeg_bytes
from workers import screening, sweeps


def new_job(data: bytes, models: tuple[str, ...] = ("nsfw",), owner: str = "worker-tests") -> str:
    media = NewMedia(data, hashlib.sha256(data).hexdigest(), "jpeg", "image", 10, 10)
    return submit(get_store(), owner, media, None, {m: "1" for m in models}).doc["id"]


def job(job_id: str) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def test_screen_job_records_the_verdict(service_env) -> None:  # type: ignore[no-untyped-def]
    job_id = new_job(jpeg_bytes((50, 50), seed=100))
    assert screening.screen_job(job_id) == "succeeded"
    row = job(job_id)
    assert row.status == "succeeded" and row.results[0].model == "nsfw"
    assert 0.0 <= row.results[0].score <= 1.0
    assert screening.screen_job(job_id) == "done"  # redelivery: nothing changes


def test_missing_blob_fails_with_a_code(service_env) -> None:  # type: ignore[no-untyped-def]
    data = jpeg_bytes((50, 50), seed=101)
    job_id = new_job(data)
    get_store().delete(key_for(hashlib.sha256(data).hexdigest()))
    assert screening.screen_job(job_id) == "failed"
    assert job(job_id).error_code == "media_missing"


def test_unknown_model_fails_with_a_code(service_env) -> None:  # type: ignore[no-untyped-def]
    job_id = new_job(jpeg_bytes((50, 50), seed=102), models=("no-such-model",))
    assert screening.screen_job(job_id) == "failed"
    assert job(job_id).error_code == "unknown_model"


def test_store_outage_is_transient(service_env, s3_server) -> None:  # type: ignore[no-untyped-def]
    job_id = new_job(jpeg_bytes((50, 50), seed=103))
    s3_server.stop()
    try:
        with pytest.raises(screening.TransientError) as caught:
            screening.screen_job(job_id)
        assert caught.value.code == "storage_unavailable"
    finally:
        s3_server.start()
    assert jobs.requeue(job_id, "storage_unavailable", "retrying")
    assert screening.screen_job(job_id) == "succeeded"
    assert job(job_id).attempts == 2


def test_sweep_resends_lost_and_stuck_jobs(service_env) -> None:  # type: ignore[no-untyped-def]
    lost = new_job(jpeg_bytes((50, 50), seed=104))
    stuck = new_job(jpeg_bytes((50, 50), seed=105))
    jobs.claim(stuck, 3)
    long_ago = utcnow() - timedelta(hours=2)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id.in_([lost, stuck])).values(updated_at=long_ago))
    sent: list[str] = []
    counts = sweeps.sweep(sent.append)
    assert {lost, stuck} <= set(sent)
    assert counts["resent"] >= 2
    assert job(stuck).status == "queued" and job(stuck).error_code == "stuck"
    again: list[str] = []
    sweeps.sweep(again.append)
    assert not {lost, stuck} & set(again)  # just re-sent: not sent again until they go stale again
