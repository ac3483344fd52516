"""Long polls in the embedded mode (no Redis): woken by announcements on a per-process UNIX socket
(core.local_events), with a once-a-second database check for what no announcement told, or a 50 ms
poll where no socket can be bound."""

from __future__ import annotations

import time
import uuid

from tests.web.long_poll_support import bearer, end_silently, finish, submit, wait_in_thread


def _embedded_waiters(monkeypatch, subject: str, data_dir, seed: int, finish_job,
                      fallback_sees: bool = True):  # type: ignore[no-untyped-def]
    """Four waiters on one in-process app without Redis; ``finish_job(id)`` ends each job after they
    have been parked for a second. With ``fallback_sees=False`` the periodic database check still runs
    but reports nothing final, so only an announcement can answer before the 20 s wait ends. Returns
    (the statements run while parked, each waiter's answer time after its job ended)."""
    from sqlalchemy import event

    from core import job_events
    from core.db import get_engine
    from tests.support.environment import reset_caches
    from web.app import create_app

    monkeypatch.setenv("REDIS_URL", "")
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    monkeypatch.setenv("INFERENCE_QUEUE", f"parked-{uuid.uuid4().hex[:8]}")
    reset_caches()
    job_events.EVENTS._reset()  # as a fresh web process (an earlier test's Redis listener stops)
    if not fallback_sees:
        real = job_events.final_among
        monkeypatch.setattr(job_events, "final_among", lambda ids: real(ids) and [])
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    try:
        app = create_app()
        headers = bearer(subject)
        jobs = [submit(app.test_client(), headers, seed + i) for i in range(4)]
        out: list = []
        threads = [wait_in_thread(app, f"/v1/jobs/{job['id']}?wait=20", headers, out) for job in jobs]
        time.sleep(0.3)
        event.listen(get_engine(), "before_cursor_execute", count)
        time.sleep(1.0)  # four waiters parked for a second
        event.remove(get_engine(), "before_cursor_execute", count)
        finished = max(finish_job(job["id"]) for job in jobs)
        for thread in threads:
            thread.join(25)
        assert len(out) == 4
        for _answered, response in out:
            assert response.get_json()["status"] == "failed"
        return statements, [answered - finished for answered, _ in out]
    finally:
        job_events.EVENTS._reset()  # the listener thread stops and its socket goes
        monkeypatch.undo()
        reset_caches()


def test_without_redis_a_finish_is_announced_to_the_waiters_over_a_local_socket(service_env, monkeypatch, subject,
                                                                                  tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The embedded mode has no Redis: a process that ends jobs sends their ids to every web process's
    socket in DATA_DIR/events (core.local_events); waiters wake at once, and the web process asks the
    database only once a second (one statement for all its waiters) for what no announcement told."""
    from core import local_events
    from core.job_events import EMBEDDED_FALLBACK_SECONDS

    statements, lags = _embedded_waiters(monkeypatch, subject, tmp_path / "data", 9205, finish,
                                         fallback_sees=False)
    assert max(lags) < 2.0, lags  # woken by the announcement: the blinded check would leave them 20 s
    assert len(statements) <= 3, statements  # 50 ms polling would be ~20
    deadline = time.monotonic() + 2 * EMBEDDED_FALLBACK_SECONDS + 1  # the thread notices at its next tick
    while list((tmp_path / "data" / "events").glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list((tmp_path / "data" / "events").glob("*.sock"))  # removed when the listener stopped
    assert local_events.announce(["nobody-listens"]) == 0


def test_without_redis_a_lost_announcement_is_found_by_the_fallback_check(service_env, monkeypatch, subject,
                                                                          tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A job that ends with no announcement (a datagram dropped from a full buffer) is still answered,
    by the once-a-second database check."""
    from core.job_events import EMBEDDED_FALLBACK_SECONDS

    _statements, lags = _embedded_waiters(monkeypatch, subject, tmp_path / "data", 9215, end_silently)
    assert max(lags) < EMBEDDED_FALLBACK_SECONDS + 2.0, lags  # the check, well before the 20 s wait ends


def test_without_a_socket_waiters_poll_the_database(service_env, monkeypatch, subject, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Where no socket can be bound (here a DATA_DIR too long for an AF_UNIX path), the one thread per
    process polls the database every 50 ms for all of its waiters, in one statement (not one per waiter)."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    statements, lags = _embedded_waiters(monkeypatch, subject, deep, 9225, end_silently)
    assert max(lags) < 2.0, lags  # well before the 20 s wait ends
    assert 5 <= len(statements) <= 40, len(statements)  # ~20 checks in that second for all four waiters
