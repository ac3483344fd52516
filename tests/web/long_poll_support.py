"""Helpers of the long-poll tests: tokens, submissions, and ending a job announced or silently."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

from tests.conftest import jpeg_bytes


def bearer(subject: str) -> dict[str, str]:
    from core.settings import get_settings
    from core.tokens import issue_token

    return {"Authorization": f"Bearer {issue_token(get_settings(), subject)}"}


def submit(client, headers, seed: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post("/v1/jobs", headers=headers, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(jpeg_bytes((48, 40), seed=seed)), "x.jpg")})
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def finish(job_id: str) -> float:
    """End the job as a sweep does (failed in the database, then its final document cached and
    announced: core.jobs.fail); returns when."""
    from core.jobs import fail

    assert fail(job_id, "test_finish", "ended by the test")
    return time.monotonic()


def end_silently(job_id: str) -> float:
    """End the job in the database alone: no status cache write and no announcement (what a lost
    pub/sub message or datagram leaves); returns when."""
    from sqlalchemy import update

    from core.db import session_scope
    from core.models import Job, JobStatus, utcnow

    with session_scope() as session:
        ended = session.execute(update(Job).where(Job.id == job_id).values(
            status=JobStatus.FAILED, error_code="test_finish", error_message="ended by the test",
            finished_at=utcnow(), updated_at=utcnow()))
        assert ended.rowcount == 1  # type: ignore[attr-defined]
    return time.monotonic()


def wait_in_thread(app, path: str, headers: dict[str, str], out: list) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        response = app.test_client().get(path, headers=headers)
        out.append((time.monotonic(), response))

    thread = threading.Thread(target=run)
    thread.start()
    return thread
