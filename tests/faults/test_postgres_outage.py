"""Stop PostgreSQL with jobs in flight: the web answers 503 in the error shape (never 500), /ready
says not ready, the worker retries instead of failing, and once the database is back every job
finishes with nothing half-written: no job without its bytes, nothing queued that the broker never
hears of, no key left claimed by a request that failed."""

from __future__ import annotations

import time

from tests.faults.fault_support import (
    assert_nothing_lost,
    broker_enqueue,
    duplicate_results,
    post_job,
    postgres_down,
    rows,
    submit_jobs,
    wait_terminal,
)
from tests.support.processes import wait_for

FAULT_SETTINGS = {"fault_screen_seconds": 1.0, "requeue_queued_after_seconds": 3, "stuck_after_seconds": 30}


def assert_503(response, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"] and isinstance(error["details"], dict)


def test_postgres_outage_is_503_then_nothing_half_written(fault_worker, fault_client, fault_app, auth) -> None:  # type: ignore[no-untyped-def]
    job_ids = submit_jobs(fault_client, auth, range(8000, 8004))
    wait_for(lambda: any(r.status == "running" for r in rows(job_ids).values()), 30, interval=0.05,
             what="a job to start")

    with postgres_down():
        assert_503(post_job(fault_client, auth, 8100), "database_unavailable")
        keyed = {**auth, "Idempotency-Key": "pg-outage-8101"}
        assert_503(post_job(fault_client, keyed, 8101), "database_unavailable")
        assert_503(fault_client.get("/v1/jobs", headers=auth), "database_unavailable")
        ready = fault_client.get("/ready")
        assert ready.status_code == 503
        checks = ready.get_json()["error"]["details"]["checks"]
        assert not checks["database"]["ok"] and checks["broker"]["ok"] and checks["object_store"]["ok"]
        time.sleep(2)  # the running job's result write and the next claims meet the outage

    # The key of the refused request is free: the retry is a fresh job, not a replay of half a job.
    retried = post_job(fault_client, keyed, 8101)
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    job_ids.append(retried.get_json()["id"])

    wait_terminal(job_ids, timeout=90, enqueue=broker_enqueue(fault_app.extensions["deepscreen.celery"]))
    final = assert_nothing_lost(fault_client, auth, job_ids)  # also: every job's bytes are stored
    assert all(r.status == "succeeded" for r in final.values()), final
    assert duplicate_results() == []
    # The outage cost at most one extra claim per job (the one whose result write failed).
    assert all(r.attempts <= 2 for r in final.values()), final
    listed = fault_client.get("/v1/jobs?status=queued", headers=auth).get_json()["items"]
    assert listed == []
    assert fault_client.get("/ready").status_code == 200
    log = fault_worker.log()  # the worker met the outage and retried: a delivery, or a batch's record
    assert "retry: Retry in" in log or "database unavailable while recording" in log
