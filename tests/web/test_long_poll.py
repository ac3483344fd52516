"""``?wait=`` long polls and ``Retry-After``.

The end-to-end tests run real gunicorn (gthread, the worker class `deepscreen web` uses) and a real
Celery worker, each on a queue of their own so the session's shared worker cannot finish the jobs
early: the waiters are parked first, then the worker is started, and each waiter's answer time is
compared with its job's ``finished_at``.
"""

from __future__ import annotations

import io
import statistics
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.conftest import free_port, jpeg_bytes
from tests.support.processes import Gunicorn, Worker
from tests.web.long_poll_support import bearer, end_silently, finish, submit, wait_in_thread

WAITERS = 40  # on ONE web process with 64 threads (48 may wait at once there)


def submit_http(url: str, headers: dict[str, str], seed: int) -> dict[str, Any]:
    response = requests.post(f"{url}/v1/jobs", headers=headers, timeout=30,
                             files={"file": (f"{seed}.jpg", jpeg_bytes((64, 48), seed=seed), "image/jpeg")})
    assert response.status_code == 202, response.text
    assert response.headers["Retry-After"] == "1"
    return response.json()


@pytest.fixture(scope="module")
def parked_stack(service_env, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One gunicorn process (64 threads) whose jobs go to a queue no worker serves yet."""
    queue = f"longpoll-{uuid.uuid4().hex[:8]}"
    env = {**service_env, "INFERENCE_QUEUE": queue}
    folder = tmp_path_factory.mktemp("long-poll")
    web = Gunicorn(env, folder / "gunicorn.log", free_port(), workers=1, threads=64)
    web.start()
    yield web, env, folder
    web.stop()


def test_many_waiters_on_one_process_are_answered_as_their_jobs_finish(parked_stack, subject) -> None:  # type: ignore[no-untyped-def]
    web, env, folder = parked_stack
    headers = bearer(subject)
    jobs = [submit_http(web.url, headers, seed=9000 + i) for i in range(WAITERS)]
    answers: dict[str, tuple[float, requests.Response]] = {}

    def wait(job_id: str) -> None:
        response = requests.get(f"{web.url}/v1/jobs/{job_id}", params={"wait": "30"}, headers=headers, timeout=60)
        answers[job_id] = (time.time(), response)

    threads = [threading.Thread(target=wait, args=(j["id"],)) for j in jobs]
    for t in threads:
        t.start()
    time.sleep(1.5)  # every waiter is parked in the one web process now
    assert not answers, "a waiter was answered before any job could finish"
    started = time.monotonic()
    quick = requests.get(f"{web.url}/v1/models", headers=headers, timeout=10)
    assert quick.status_code == 200 and time.monotonic() - started < 5  # threads are left (else held for the 30 s wait)

    worker = Worker(env, folder / "worker.log", queues=env["INFERENCE_QUEUE"], name="longpoll")
    worker.start()
    try:
        for t in threads:
            t.join(45)
    finally:
        worker.stop()
    assert len(answers) == WAITERS
    lags = []
    for job_id, (received, response) in answers.items():
        body = response.json()
        assert response.status_code == 200 and body["id"] == job_id and body["status"] == "succeeded", body
        assert "Retry-After" not in response.headers  # final answers carry none
        lags.append(received - datetime.fromisoformat(body["finished_at"]).timestamp())
    lags.sort()
    print(f"\n{WAITERS} waiters on one process: answer - finished_at p50 {statistics.median(lags) * 1000:.0f} ms, "
          f"max {lags[-1] * 1000:.0f} ms")
    # Woken by the pub/sub message, not by the re-read every RECHECK_SECONDS (5 s): that one would spread
    # the lags over 0-5 s. The bounds leave a slow host room; the figure itself is bench/verdict_latency.py's.
    assert statistics.median(lags) < 1.0, lags
    assert lags[-1] < 2.5, lags


@pytest.fixture(scope="module")
def tiny_stack(service_env, tmp_path_factory):  # type: ignore[no-untyped-def]
    """4 threads: at most 3 long polls wait at once; no worker ever serves its queue."""
    env = {**service_env, "INFERENCE_QUEUE": f"nobody-{uuid.uuid4().hex[:8]}"}
    web = Gunicorn(env, tmp_path_factory.mktemp("tiny") / "gunicorn.log", free_port(), workers=1, threads=4)
    web.start()
    yield web
    web.stop()


def test_waiters_beyond_the_cap_are_answered_at_once(tiny_stack, subject) -> None:  # type: ignore[no-untyped-def]
    headers = bearer(subject)
    job = submit_http(tiny_stack.url, headers, seed=9100)
    held: list[tuple[float, requests.Response]] = []
    started = time.monotonic()

    def wait() -> None:
        response = requests.get(f"{tiny_stack.url}/status/{job['id']}", params={"wait": "4"}, headers=headers,
                                timeout=30)
        held.append((time.monotonic() - started, response))

    threads = [threading.Thread(target=wait) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    extra_started = time.monotonic()
    extra = requests.get(f"{tiny_stack.url}/status/{job['id']}", params={"wait": "4"}, headers=headers, timeout=30)
    assert time.monotonic() - extra_started < 3.0  # the 4th thread is kept for ordinary requests (not held 4 s)
    assert extra.json()["status"] == "queued" and extra.headers["Retry-After"] == "1"
    for t in threads:
        t.join(30)
    assert len(held) == 3
    for elapsed, response in held:
        assert 3.9 < elapsed < 8, elapsed  # held for the whole wait, then the current (queued) document
        assert response.json()["status"] == "queued" and response.headers["Retry-After"] == "1"


def test_a_sync_worker_never_holds_its_process_for_a_wait(service_env, subject, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run under sync workers (someone's own gunicorn command), ?wait= answers at once."""
    env = {**service_env, "INFERENCE_QUEUE": f"nobody-{uuid.uuid4().hex[:8]}", "WEB_THREADS": "128"}
    web = Gunicorn(env, tmp_path / "gunicorn.log", free_port(), workers=1, worker_class="sync")
    web.start()
    try:
        headers = bearer(subject)
        job = submit_http(web.url, headers, seed=9150)
        started = time.monotonic()
        response = requests.get(f"{web.url}/v1/jobs/{job['id']}", params={"wait": "10"}, headers=headers,
                                timeout=30)
        assert time.monotonic() - started < 2 and response.headers["Retry-After"] == "1"
    finally:
        web.stop()


# ---- in-process: the mechanism piece by piece --------------------------------------------------------

@pytest.fixture()
def parked(service_env, monkeypatch):  # type: ignore[no-untyped-def]
    """Jobs of a queue no worker serves (the session's worker must not finish them)."""
    from tests.support.environment import reset_caches

    monkeypatch.setenv("INFERENCE_QUEUE", f"parked-{uuid.uuid4().hex[:8]}")
    reset_caches()
    yield
    monkeypatch.undo()
    reset_caches()


def test_create_app_starts_no_thread_and_the_listener_starts_on_first_wait(parked, auth) -> None:  # type: ignore[no-untyped-def]
    from core import job_events
    from web.app import create_app

    job_events.EVENTS._reset()  # as a fresh web process (an earlier test's listener stops)
    before = set(threading.enumerate())

    def new_threads() -> set[str]:
        return {t.name for t in set(threading.enumerate()) - before}

    client = create_app().test_client()
    assert new_threads() == set()
    job = submit(client, auth, 9200)
    client.get(f"/v1/jobs/{job['id']}", headers=auth)  # no wait: still no thread
    assert "deepscreen-job-events" not in new_threads()
    client.get(f"/v1/jobs/{job['id']}?wait=0.2", headers=auth)
    assert "deepscreen-job-events" in new_threads()


def test_retry_after_only_on_unfinished_answers_and_wait_is_validated(parked, client, auth) -> None:  # type: ignore[no-untyped-def]
    job = submit(client, auth, 9201)
    for path in (f"/v1/jobs/{job['id']}", f"/status/{job['id']}"):
        response = client.get(path, headers=auth)
        assert response.get_json()["status"] == "queued" and response.headers["Retry-After"] == "1"
        started = time.monotonic()
        waited = client.get(path, headers=auth, query_string={"wait": "0.5"})
        assert 0.45 < time.monotonic() - started < 3 and waited.headers["Retry-After"] == "1"
    for bad in ("31", "-1", "abc", "nan", "inf", "1e9"):
        response = client.get(f"/v1/jobs/{job['id']}", headers=auth, query_string={"wait": bad})
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_wait", bad
    assert client.get(f"/v1/jobs/{job['id']}?wait=0", headers=auth).status_code == 200
    unknown = client.get(f"/v1/jobs/{uuid.uuid4()}?wait=5", headers=auth)
    assert unknown.status_code == 404 and "Retry-After" not in unknown.headers
    listed = client.get("/v1/jobs", headers=auth)  # the limiter's own Retry-After is not sent on a 200
    assert listed.status_code == 200 and "Retry-After" not in listed.headers
    assert "X-RateLimit-Remaining" in listed.headers
    finish(job["id"])
    final = client.get(f"/v1/jobs/{job['id']}?wait=5", headers=auth)
    assert final.get_json()["status"] == "failed" and "Retry-After" not in final.headers


def test_an_announced_finish_wakes_every_waiter_on_that_job_at_once(parked, app, auth, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With the periodic re-read pushed past the wait, only the announcement can answer within 2 s."""
    from core import job_events

    monkeypatch.setattr(job_events, "RECHECK_SECONDS", 60.0)
    job = submit(app.test_client(), auth, 9202)
    other = submit(app.test_client(), auth, 9203)
    out: list = []
    others: list = []
    threads = [wait_in_thread(app, f"/v1/jobs/{job['id']}?wait=20", auth, out) for _ in range(3)]
    threads.append(wait_in_thread(app, f"/status/{other['id']}?wait=3", auth, others))
    time.sleep(0.8)
    announced = finish(job["id"])
    for t in threads:
        t.join(25)
    assert len(out) == 3
    for answered, response in out:
        assert response.get_json()["status"] == "failed"
        assert answered - announced < 2.0, answered - announced
    (answered, response), = others  # a waiter on another job is not woken by it
    assert response.get_json()["status"] == "queued" and answered - announced > 1.5


def test_an_unannounced_finish_is_seen_by_the_periodic_recheck(parked, app, auth) -> None:  # type: ignore[no-untyped-def]
    """A job that ended with no announcement (a lost message) is seen by the re-read every RECHECK_SECONDS."""
    from core.job_events import RECHECK_SECONDS

    job = submit(app.test_client(), auth, 9204)
    out: list = []
    started = time.monotonic()
    thread = wait_in_thread(app, f"/v1/jobs/{job['id']}?wait=20", auth, out)
    time.sleep(0.5)
    end_silently(job["id"])
    thread.join(25)
    (answered, response), = out
    assert response.get_json()["status"] == "failed"
    assert RECHECK_SECONDS - 0.5 < answered - started < RECHECK_SECONDS + 1.5  # the re-read, not a wake-up


def test_a_waiter_is_answered_as_its_job_finishes(parked_stack, subject) -> None:  # type: ignore[no-untyped-def]
    """One waiter, one real worker: the answer follows the worker's finished_at by far less than the
    5 s re-read (the figure is printed; bench/verdict_latency.py measures it)."""
    web, env, folder = parked_stack
    headers = bearer(subject)
    job = submit_http(web.url, headers, seed=9300)
    result: list = []

    def wait() -> None:
        response = requests.get(f"{web.url}/v1/jobs/{job['id']}", params={"wait": "30"}, headers=headers,
                                timeout=60)
        result.append((time.time(), response))

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(1.0)
    worker = Worker(env, folder / "worker-single.log", queues=env["INFERENCE_QUEUE"], name="longpoll1")
    worker.start()
    try:
        thread.join(45)
    finally:
        worker.stop()
    (received, response), = result
    body = response.json()
    assert body["status"] == "succeeded", body
    lag = received - datetime.fromisoformat(body["finished_at"]).timestamp()
    print(f"\none waiter: answered {lag * 1000:.0f} ms after finished_at")
    assert 0 <= lag < 1.0, lag


def _job_with_key(key: str) -> str | None:
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Job

    with session_scope() as session:
        return session.scalar(select(Job.id).where(Job.idempotency_key == key))


def test_submit_with_wait_answers_once_the_job_is_final_and_the_hold_is_not_latency(parked, app, auth,
                                                                                    monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``POST /v1/jobs?wait=``: submit and wait in one request. The answer comes when the job ends
    (200, final), or at the end of the wait (202, Retry-After); a bad wait stores nothing; the hold is
    kept out of the latency histogram (a p95 alert must not fire because clients wait)."""
    from core import job_events
    from web.metrics import LATENCY

    job_events.EVENTS._reset()  # as a fresh web process (an earlier test's poller thread stops)
    monkeypatch.setattr(job_events, "RECHECK_SECONDS", 60.0)  # only the announcement answers within the wait

    def post(key: str, wait: str, out: list) -> threading.Thread:
        def run() -> None:
            response = app.test_client().post(
                f"/v1/jobs?wait={wait}", headers={**auth, "Idempotency-Key": key}, content_type="multipart/form-data",
                data={"file": (io.BytesIO(jpeg_bytes((48, 40), seed=uuid.uuid4().int % 10**6)), "x.jpg")})
            out.append((time.monotonic(), response))

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    bad_key = f"bad-{uuid.uuid4().hex}"
    refused = app.test_client().post("/v1/jobs?wait=abc", headers={**auth, "Idempotency-Key": bad_key},
                                     content_type="multipart/form-data",
                                     data={"file": (io.BytesIO(jpeg_bytes((48, 40), seed=9400)), "x.jpg")})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "bad_wait"
    assert _job_with_key(bad_key) is None  # refused before anything was stored

    latency = LATENCY.labels("jobs.create")
    held_before = latency._sum.get()
    key, out = f"held-{uuid.uuid4().hex}", []
    started = time.monotonic()
    thread = post(key, "20", out)
    time.sleep(0.8)
    job_id = _job_with_key(key)
    assert job_id is not None and not out  # queued, and the answer is held
    announced = finish(job_id)
    thread.join(25)
    (answered, response), = out
    assert response.status_code == 200 and response.get_json()["status"] == "failed", response.get_json()
    assert response.get_json()["id"] == job_id and "Retry-After" not in response.headers
    assert answered - announced < 2.0 and answered - started > 0.75
    assert latency._sum.get() - held_before < 0.5  # held ~0.8 s, worked a few ms
    replayed = app.test_client().post("/v1/jobs", headers={**auth, "Idempotency-Key": key},
                                      content_type="multipart/form-data",
                                      data={"file": (io.BytesIO(jpeg_bytes((48, 40), seed=9401)), "x.jpg")})
    assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"  # final: 200
    assert replayed.get_json()["id"] == job_id and replayed.get_json()["status"] == "failed"

    short: list = []
    started = time.monotonic()
    post(f"short-{uuid.uuid4().hex}", "0.3", short).join(10)
    (answered, response), = short
    assert response.status_code == 202 and response.get_json()["status"] == "queued"
    assert response.headers["Retry-After"] == "1" and 0.25 < answered - started < 3
