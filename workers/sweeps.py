"""Beat's periodic repair: nothing accepted stays lost.

- ``running`` with no update for STUCK_AFTER_SECONDS: its worker died without the broker noticing
  (or the redelivery was lost) → back to ``queued`` and sent again; claim() bounds the attempts.
- ``queued`` with no update for REQUEUE_QUEUED_AFTER_SECONDS: accepted, but the broker lost the
  message (or it was never sent) → sent again. A duplicate delivery is harmless: claim() and the
  unique results make the second one a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from core import jobs
from core.db import session_scope
from core.models import JobStatus
from core.settings import get_settings

log = logging.getLogger(__name__)


def sweep(enqueue: Callable[[str], None]) -> dict[str, int]:
    settings = get_settings()
    with session_scope() as session:
        stuck = jobs.stale_jobs(session, JobStatus.RUNNING, timedelta(seconds=settings.stuck_after_seconds))
        waiting = jobs.stale_jobs(
            session, JobStatus.QUEUED, timedelta(seconds=settings.requeue_queued_after_seconds)
        )
    for job_id in stuck:
        jobs.requeue(job_id, "stuck", "no progress before the deadline; re-queued")
    resent = 0
    for job_id in [*stuck, *waiting]:
        try:
            enqueue(job_id)
            jobs.touch(job_id)
            resent += 1
        except Exception as exc:  # broker down: the next sweep tries again
            log.warning("could not re-enqueue %s: %s", job_id, exc)
    if stuck or waiting:
        log.info("sweep: %d stuck, %d waiting, %d re-sent", len(stuck), len(waiting), resent)
    return {"stuck": len(stuck), "waiting": len(waiting), "resent": resent}
