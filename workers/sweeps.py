"""Beat's periodic repair, run on the control queue (never behind inference messages): nothing
accepted stays lost.

- running jobs whose lease ran out (their worker was killed) → queued and woken, or failed
  ``attempts_exhausted`` once they have used MAX_ATTEMPTS;
- running jobs held by a process on this host that no longer exists → queued at once;
- queued jobs nobody claimed for REQUEUE_QUEUED_AFTER_SECONDS (the wake-up was lost) → woken again;
- finished jobs whose webhook is still pending (the delivery task was lost) → sent again.
A duplicate wake-up is harmless: claims are conditional and results unique.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from core import job_queue, jobs, repairs, reprocess, retention
from core.object_store import get_store
from core.settings import get_settings
from workers import filesystem_transport, reprocessing
from workers.celery_app import message_folder

log = logging.getLogger(__name__)
WEBHOOK_RESEND_AFTER = timedelta(minutes=5)
REPROCESS_STALLED_AFTER = timedelta(seconds=30)


def maintain(schedule_chunk: Callable[[str], None]) -> dict[str, Any]:
    """Slower housekeeping (every minute): scheduled reprocessing of the live versions, retention, and
    the embedded broker's leftover files."""
    settings = get_settings()
    started = []
    every = timedelta(hours=settings.reprocess_every_hours) if settings.reprocess_every_hours else None
    for model, version, trigger, since in reprocessing.due_runs(every):
        run = reprocess.start(model, version, trigger=trigger, since=since)
        schedule_chunk(run["id"])
        started.append(run["id"])
    expired = retention.expire(get_store(), settings.retention_days, settings.keep_verdicts) \
        if settings.retention_days or _any_key_retention() else {"expired": 0, "blobs_deleted": 0}
    leftovers = filesystem_transport.remove_leftovers(message_folder(settings)) if settings.embedded else 0
    return {"runs_started": started, **expired, "broker_leftovers_removed": leftovers}


def _any_key_retention() -> bool:
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import ApiKey

    with session_scope() as session:
        return session.scalar(select(ApiKey.id).where(ApiKey.retention_days.is_not(None)).limit(1)) is not None


def sweep(wake: Callable[[str], None], send_webhook: Callable[[str], None],
          schedule_chunk: Callable[[str], None] | None = None) -> dict[str, int]:
    settings = get_settings()
    requeued, exhausted = repairs.expire_leases(settings.max_attempts, timedelta(seconds=settings.stuck_after_seconds))
    for owner in repairs.dead_local_owners():
        requeued += job_queue.release_owner(owner, get_settings().max_attempts)
    # A few wake-ups restart draining; each delivery then claims batch after batch from the table.
    waiting = repairs.lost_messages(timedelta(seconds=settings.requeue_queued_after_seconds), 2 * settings.batch_max)
    woken = 0
    for job_id in dict.fromkeys([*requeued, *waiting]):
        try:
            wake(job_id)
            woken += 1
        except Exception as exc:  # broker down: the next sweep tries again
            log.warning("could not wake %s: %s", job_id, exc)
    jobs.touch(waiting)
    hooks = repairs.pending_webhooks(WEBHOOK_RESEND_AFTER)
    for job_id in hooks:
        try:
            send_webhook(job_id)
        except Exception as exc:
            log.warning("could not re-send the webhook of %s: %s", job_id, exc)
    stalled = reprocess.stalled(REPROCESS_STALLED_AFTER) if schedule_chunk is not None else []
    for run_id in stalled:  # its chunk message was lost (a worker killed mid-chunk): resume the run
        try:
            assert schedule_chunk is not None
            schedule_chunk(run_id)
        except Exception as exc:
            log.warning("could not resume reprocessing run %s: %s", run_id, exc)
    counts = {"requeued": len(requeued), "exhausted": len(exhausted), "waiting": len(waiting), "woken": woken,
              "webhooks": len(hooks), "runs_resumed": len(stalled)}
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts
