"""Restart Redis (broker + status cache, no persistence) with jobs in flight: every queued and
unacknowledged message is gone, yet no accepted job is lost. The web still accepts jobs while the
broker is down (they stay queued in PostgreSQL), and beat's sweep re-sends what the broker lost;
a batch whose worker died during the outage (its message gone too) is put back by whichever sees
first that the lease holder's pid is gone (the sweep, or the pool's replacement process), and the
sweep re-sends its wake-ups."""

from __future__ import annotations

from tests.faults.fault_support import (
    assert_nothing_lost,
    broker_enqueue,
    duplicate_results,
    kill9,
    post_job,
    redis_down,
    rows,
    submit_jobs,
    wait_terminal,
)
from tests.support.processes import wait_for

FAULT_SETTINGS = {"fault_screen_seconds": 1.5, "requeue_queued_after_seconds": 2, "stuck_after_seconds": 6}


def test_redis_restart_loses_no_accepted_job(fault_worker, fault_client, fault_app, auth) -> None:  # type: ignore[no-untyped-def]
    job_ids = submit_jobs(fault_client, auth, range(7000, 7006))
    def running() -> list[str]:
        return [j for j, r in rows(job_ids).items() if r.status == "running"]

    wait_for(running, 30, interval=0.05, what="a job to start")
    with redis_down():
        victim = running()
        kill9(fault_worker.pool_pid())  # mid-batch, and the broker cannot take the message back
        assert victim, rows(job_ids)
        accepted = [post_job(fault_client, auth, seed) for seed in (7100, 7101)]
        assert [r.status_code for r in accepted] == [202, 202], [r.get_data(as_text=True) for r in accepted]
        job_ids += [r.get_json()["id"] for r in accepted]
        ready = fault_client.get("/ready")
        assert ready.status_code == 503 and ready.get_json()["error"]["code"] == "not_ready"
        checks = ready.get_json()["error"]["details"]["checks"]
        assert not checks["broker"]["ok"] and checks["database"]["ok"]

    assert all(r.status == "running" for r in rows(victim).values())  # died with the broker's copy
    sweeps: list[dict[str, int]] = []
    wait_terminal(job_ids, timeout=90, enqueue=broker_enqueue(fault_app.extensions["deepscreen.celery"]),
                  sweeps_done=sweeps)
    final = assert_nothing_lost(fault_client, auth, job_ids)
    assert all(r.status == "succeeded" for r in final.values()), final
    # The victims were put back once and claimed once more: by the sweep, or first by the pool's
    # replacement process (it adopts a dead sibling's jobs at start-up). The jobs accepted during
    # the outage were never sent to a broker: only the sweep's re-sends can have started them.
    assert all(final[v].attempts == 2 for v in victim), final
    assert sum(s["woken"] for s in sweeps) >= 1, sweeps
    assert duplicate_results() == []
    assert fault_client.get("/ready").status_code == 200


def test_worker_consumes_again_after_the_restart(fault_worker, fault_client, auth) -> None:  # type: ignore[no-untyped-def]
    """No sweep this time: the worker reconnected to the new Redis and takes fresh work by itself."""
    job_ids = submit_jobs(fault_client, auth, range(7200, 7202))
    final = wait_terminal(job_ids, timeout=30)
    assert all(r.status == "succeeded" and r.attempts == 1 for r in final.values()), final
