"""Which worker processes are alive and what they serve, from their heartbeats (a table, so the web's
/ready can report it in every mode, Redis or not)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from core.db import session_scope
from core.models import WorkerHeartbeat, utcnow


def beat(worker_id: str, hostname: str, pid: int, queues: str, info: dict[str, Any]) -> None:
    now = utcnow()
    with session_scope() as session:
        changed = session.execute(
            update(WorkerHeartbeat).where(WorkerHeartbeat.id == worker_id)
            .values(last_seen_at=now, info=info, queues=queues)
        ).rowcount  # type: ignore[attr-defined]
        if not changed:
            session.add(WorkerHeartbeat(id=worker_id, hostname=hostname, pid=pid, queues=queues, started_at=now,
                                        last_seen_at=now, info=info))


def forget(worker_id: str) -> None:
    with session_scope() as session:
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.id == worker_id))


def live(within: timedelta) -> list[dict[str, Any]]:
    """Workers heard from within ``within``, newest first; older rows are pruned."""
    now = utcnow()
    with session_scope() as session:
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < now - 10 * within))
        rows = session.scalars(
            select(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at >= now - within)
            .order_by(WorkerHeartbeat.last_seen_at.desc())
        ).all()
        return [{"id": r.id, "hostname": r.hostname, "pid": r.pid, "queues": r.queues.split(",") if r.queues else [],
                 "started_at": r.started_at.isoformat(), "last_seen_at": r.last_seen_at.isoformat(), **r.info}
                for r in rows]
