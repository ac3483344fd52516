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

from core import job_queue, jobs, repairs
from core.settings import get_settings

log = logging.getLogger(__name__)
WEBHOOK_RESEND_AFTER = timedelta(minutes=5)


def sweep(wake: Callable[[str], None], send_webhook: Callable[[str], None]) -> dict[str, int]:
    settings = get_settings()
    requeued, exhausted = repairs.expire_leases(settings.max_attempts, timedelta(seconds=settings.stuck_after_seconds))
    for owner in repairs.dead_local_owners():
        requeued += job_queue.release_owner(owner)
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
    counts = {"requeued": len(requeued), "exhausted": len(exhausted), "waiting": len(waiting), "woken": woken,
              "webhooks": len(hooks)}
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts
