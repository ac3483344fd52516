"""One delivery as a plain function (no broker) on PostgreSQL + the S3 server and the real nsfw model:
micro-batches equal single results, a corrupt file fails only its own job, outages are transient,
and the sweep repairs what a dead worker leaves."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import event, update
from sqlalchemy.engine import Engine

from core import status_cache
from core.db import session_scope
from core.models import Job, Result, utcnow
from core.object_store import get_store, key_for
from core.submissions import NewMedia, submit
from tests.conftest import jpeg_bytes
from tests.support.environment import apply_env
from workers import process, screening, sweeps


@pytest.fixture()
def empty_queue(service_env: dict[str, str]) -> Iterator[None]:
    """No queued jobs from other tests: a delivery drains whatever is queued."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.status.in_(["queued", "running"]))
                        .values(status="failed", error_code="test_cleanup"))
    yield


def new_job(data: bytes, models: tuple[str, ...] = ("nsfw",), owner: str = "worker-tests",
            fmt: str = "jpeg") -> str:
    media = NewMedia(data, hashlib.sha256(data).hexdigest(), fmt, "image", 10, 10)
    return submit(get_store(), owner, media, None, {m: "1" for m in models}).doc["id"]


def job(job_id: str) -> Job:
    with session_scope() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def deliver(job_id: str, **env: str) -> tuple[screening.Delivery, list[tuple[str, float]], list[str]]:
    woken: list[tuple[str, float]] = []
    hooks: list[str] = []
    with apply_env(env):
        try:
            result = screening.deliver(job_id, lambda j, d: woken.append((j, d)), hooks.append)
        finally:
            process.stop_current()  # its heartbeat must not outlive the settings it was made with
    return result, woken, hooks


def scores(job_id: str) -> dict[str, float]:
    return {r.model: r.score for r in job(job_id).results}


def test_one_delivery_screens_the_whole_queue_in_batches_equal_to_single_results(empty_queue) -> None:  # type: ignore[no-untyped-def]
    images = [jpeg_bytes((60 + i, 50), seed=300 + i) for i in range(10)]
    batched = [new_job(data, owner="batched") for data in images]
    delivery, _, _ = deliver(batched[0], BATCH_MAX="4", BATCH_WAIT_MS="0", DRAIN_SECONDS="30")
    assert delivery.first == "claimed"
    assert delivery.batches == [4, 4, 2]  # claimed, then drained from the table without new messages
    assert all(job(j).status == "succeeded" for j in batched)
    for result in job(batched[0]).results:
        assert result.evidence["runtime"]["batch_size"] == 4
        assert result.evidence["runtime"]["provider"] == "CPUExecutionProvider"
        assert result.validation and result.validation["status"]
    batched_scores = [scores(j) for j in batched]
    # The same bytes screened one job per delivery (batch of one): the same scores.
    with session_scope() as session:  # new jobs must not reuse the known verdicts
        session.execute(Result.__table__.delete().where(Result.job_id.in_(batched)))
    singles = [new_job(data, owner="single") for data in images]
    for job_id in singles:
        one, _, _ = deliver(job_id, BATCH_MAX="1", BATCH_WAIT_MS="0", DRAIN_SECONDS="0")
        assert one.batches == [1]
    for expected, single in zip(batched_scores, singles, strict=True):
        assert expected and scores(single) == pytest.approx(expected, abs=1e-6)


def _statements(job_id: str) -> tuple[screening.Delivery, list[str]]:
    """One delivery for ``job_id`` and the SQL it ran (every engine: the settings make a new one)."""
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731  (before_cursor_execute's statement)
    event.listen(Engine, "before_cursor_execute", listener)
    try:
        delivery, _, _ = deliver(job_id, BATCH_MAX="8", BATCH_WAIT_MS="0", DRAIN_SECONDS="0")
    finally:
        event.remove(Engine, "before_cursor_execute", listener)
    # An earlier delivery's heartbeat thread may still be saying goodbye: only the queue's SQL counts.
    return delivery, [s for s in statements if "worker_heartbeats" not in s]


def test_a_wake_up_for_a_job_a_batch_finished_costs_no_database_statement(empty_queue) -> None:  # type: ignore[no-untyped-def]
    """Most wake-ups name a job an earlier batch took: its cached final document answers without the
    database. Without it the delivery claims as always (and still screens nothing twice)."""
    ids = [new_job(jpeg_bytes((40 + i, 30), seed=900 + i), owner="wakeups") for i in range(3)]
    first, _, _ = deliver(ids[0], BATCH_MAX="8", BATCH_WAIT_MS="0", DRAIN_SECONDS="0")
    assert first.batches == [3] and all(job(j).status == "succeeded" for j in ids)
    late, statements = _statements(ids[1])
    assert (late.first, late.batches, statements) == ("done", [], [])
    client = status_cache.get_redis()
    assert client is not None and client.delete(status_cache.PREFIX + ids[2]) == 1
    late, statements = _statements(ids[2])
    assert late.batches == [] and any(s.lstrip().upper().startswith("UPDATE JOBS") for s in statements)
    assert job(ids[2]).status == "succeeded" and len(job(ids[2]).results) == 1


def test_a_corrupt_file_fails_only_its_own_job(empty_queue) -> None:  # type: ignore[no-untyped-def]
    good = [new_job(jpeg_bytes((50, 50), seed=320 + i)) for i in range(3)]
    broken = bytearray(jpeg_bytes((80, 80), seed=330))
    broken[200:] = b"\x00" * (len(broken) - 200)  # header intact, pixels gone
    bad = new_job(bytes(broken))
    deliver(good[0], BATCH_MAX="8", BATCH_WAIT_MS="0")
    assert job(bad).status == "failed" and job(bad).error_code == "corrupt_image"
    assert all(job(j).status == "succeeded" for j in good)


def test_missing_blob_and_unknown_model_fail_with_codes(empty_queue) -> None:  # type: ignore[no-untyped-def]
    data = jpeg_bytes((50, 50), seed=340)
    missing = new_job(data)
    get_store().delete(key_for(hashlib.sha256(data).hexdigest()))
    unknown = new_job(jpeg_bytes((50, 50), seed=341), models=("no-such-model",))
    deliver(missing)
    assert job(missing).error_code == "media_missing"
    assert job(unknown).status == "failed" and job(unknown).error_code == "unknown_model"


def test_store_outage_is_transient_with_backoff(empty_queue, s3_server) -> None:  # type: ignore[no-untyped-def]
    job_id = new_job(jpeg_bytes((50, 50), seed=350))
    s3_server.stop()
    try:
        _, woken, _ = deliver(job_id)
    finally:
        s3_server.start()
    row = job(job_id)
    assert row.status == "queued" and row.error_code == "storage_unavailable"
    assert row.attempts == 0 and row.retries == 1  # not the job's fault: the attempt is refunded
    assert woken == [(job_id, 1.0)]  # a wake-up once the backoff has passed
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(available_at=utcnow()))
    deliver(job_id)
    assert job(job_id).status == "succeeded" and job(job_id).attempts == 1


def test_webhook_is_pending_in_the_same_transaction_as_the_verdict(empty_queue) -> None:  # type: ignore[no-untyped-def]
    data = jpeg_bytes((50, 50), seed=360)
    media = NewMedia(data, hashlib.sha256(data).hexdigest(), "jpeg", "image", 10, 10)
    job_id = submit(get_store(), "hooks", media, None, {"nsfw": "1"},
                    callback_url="http://127.0.0.1:9/hook").doc["id"]
    _, _, hooks = deliver(job_id)
    assert hooks == [job_id] and job(job_id).webhook_status == "pending"


def test_sweep_repairs_expired_leases_and_lost_messages(empty_queue) -> None:  # type: ignore[no-untyped-def]
    lost = new_job(jpeg_bytes((50, 50), seed=370))
    held = new_job(jpeg_bytes((50, 50), seed=371))
    long_ago = utcnow() - timedelta(hours=2)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == lost).values(updated_at=long_ago))
        session.execute(update(Job).where(Job.id == held).values(
            status="running", attempts=1, lease_owner="gone-host:1:x", lease_expires_at=long_ago))
    woken: list[str] = []
    counts = sweeps.sweep(woken.append, lambda _j: None)
    assert {lost, held} <= set(woken)
    assert counts["requeued"] >= 1 and counts["waiting"] >= 1
    assert job(held).status == "queued" and job(held).error_code == "worker_lost"
    again: list[str] = []
    sweeps.sweep(again.append, lambda _j: None)
    assert not {lost, held} & set(again)  # just woken: not again until they go stale again
