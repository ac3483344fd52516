"""Cut the object store: uploads get 503 storage_unavailable, /ready says not ready, and jobs
already accepted wait (task retries with backoff) and finish once the store is back."""

from __future__ import annotations

import time

from tests.faults.fault_support import (
    assert_nothing_lost,
    duplicate_results,
    post_job,
    rows,
    submit_jobs,
    wait_terminal,
)
from tests.support.processes import wait_for

FAULT_SETTINGS = {"fault_screen_seconds": 0.2}
OUTAGE_SECONDS = 5  # long enough for several retries of each job (backoff 1, 2, 4 s ...)


def test_store_outage_is_503_and_jobs_finish_after_it(fault_worker, fault_client, auth, s3_server) -> None:  # type: ignore[no-untyped-def]
    job_ids = submit_jobs(fault_client, auth, range(9000, 9003))
    s3_server.stop()
    try:
        response = post_job(fault_client, auth, 9100)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "storage_unavailable"
        ready = fault_client.get("/ready")
        assert ready.status_code == 503
        assert not ready.get_json()["error"]["details"]["checks"]["object_store"]["ok"]
        wait_for(lambda: any(r.error_code == "storage_unavailable" for r in rows(job_ids).values()), 30,
                 what="a job to meet the outage")
        time.sleep(OUTAGE_SECONDS)
        during = rows(job_ids)
        assert all(r.status in ("queued", "running") for r in during.values()), during
    finally:
        s3_server.start()

    final = wait_terminal(job_ids, timeout=90)
    assert_nothing_lost(fault_client, auth, job_ids)
    # Retries on an outage are not attempts: MAX_ATTEMPTS stays for jobs that crash their worker.
    assert all(r.status == "succeeded" and r.error_code is None and r.attempts == 1 for r in final.values()), final
    assert duplicate_results() == []
    assert fault_client.get("/ready").status_code == 200


def test_a_store_that_stays_down_fails_the_job_with_its_code(faults_env, s3_server) -> None:  # type: ignore[no-untyped-def]
    """The last allowed retry ends the job ``failed`` with ``storage_unavailable`` rather than
    leaving it queued for ever. (The real backoff would take minutes, so this one delivery runs
    in-process, as the worker would run it, with the job's retry count already at the limit.)"""
    import hashlib

    from sqlalchemy import update

    from core.db import session_scope
    from core.models import Job
    from core.object_store import get_store
    from core.submissions import NewMedia, submit
    from tests.faults.fault_support import SLOW_MODEL, image
    from workers import process, screening

    data = image(9200)
    media = NewMedia(data, hashlib.sha256(data).hexdigest(), "jpeg", "image", 64, 48)
    job_id = submit(get_store(), "fault-tests", media, None, {SLOW_MODEL: "1"}).doc["id"]  # never enqueued
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(retries=screening.MAX_DELIVERY_RETRIES))
    s3_server.stop()
    try:
        delivery = screening.deliver(job_id, lambda *_: None, lambda _: None)
    finally:
        s3_server.start()
        process.stop_current()
    assert delivery.statuses[job_id] == "failed"
    row = rows([job_id])[job_id]
    assert (row.status, row.error_code, row.attempts, row.results) == ("failed", "storage_unavailable", 1, 0)
