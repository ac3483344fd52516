"""Waiting for a job to finish without a process per waiter: the long poll behind ``?wait=``.

Workers announce every finished job id on Redis (``status_cache.DONE_CHANNEL``, written in the same
pipeline as the job's final document, after it). Each web process runs ONE listener thread,
started on the first wait (never at import or in the app factory, and again after a fork), that
turns those messages into ``threading.Event``s for the threads waiting on that id. A woken waiter
re-reads the job (the cache holds its final document by then), so nothing trusts the message
alone. Without a message a waiter still re-reads every ``RECHECK_SECONDS`` (a message lost with a
Redis hiccup announces nothing) and at its deadline, from the database.

Without Redis (the embedded mode) the one thread per process listens on a UNIX datagram socket
instead (core.local_events: workers send each finished batch's ids to every web process's socket),
and once a second asks the database which of the ids being waited on are final, in one statement
for all of them, for anything no announcement told. Where no socket can be bound it asks every
``EMBEDDED_POLL_SECONDS`` (a probe per waiter cost each one a query every 50 ms).

While Redis is configured but the listener is disconnected, each waiter probes its own job's status
column every ``DEGRADED_POLL_SECONDS`` (gentler: the database is then the only thing answering).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from sqlalchemy import bindparam, select

from core import local_events, status_cache
from core.db import get_engine, session_scope
from core.models import TERMINAL, Job
from core.settings import get_settings

log = logging.getLogger(__name__)
RECHECK_SECONDS = 5.0
EMBEDDED_POLL_SECONDS = 0.05
EMBEDDED_FALLBACK_SECONDS = 1.0
DEGRADED_POLL_SECONDS = 1.0
READY_WAIT_SECONDS = 1.0  # the first waiter waits this long for the subscription before reading


class Waiter:
    __slots__ = ("event", "job_id")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.event = threading.Event()


class JobEvents:
    """The per-process registry of waiters and the one pub/sub listener that wakes them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._generation = getattr(self, "_generation", 0) + 1  # a listener of an older one stops
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self._count = 0
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.healthy = False  # subscribed right now: messages will arrive

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # a forked child inherits neither the thread nor its waiters
            self._reset()

    @property
    def count(self) -> int:
        return self._count

    @contextmanager
    def watch(self, job_id: str, limit: int) -> Iterator[Waiter | None]:
        """Register a waiter for ``job_id`` (None when ``limit`` waiters are already waiting here).

        Register BEFORE reading the job: a finish between the read and the wait then still wakes it.
        """
        self._check_fork()
        waiter: Waiter | None = None
        with self._lock:
            if self._count < limit:
                waiter = Waiter(job_id)
                self._waiters.setdefault(job_id, set()).add(waiter)
                self._count += 1
        if waiter is not None:
            if get_settings().redis_url:
                self._ensure_listener()
            else:
                self._ensure_thread(self._poll)
        try:
            yield waiter
        finally:
            if waiter is not None:
                with self._lock:
                    group = self._waiters.get(job_id)
                    if group is not None:
                        group.discard(waiter)
                        if not group:
                            del self._waiters[job_id]
                    self._count -= 1

    def _ensure_listener(self) -> None:
        self._ensure_thread(self._listen)
        if not self.healthy:
            self._ready.wait(READY_WAIT_SECONDS)

    def _ensure_thread(self, target: Callable[[int], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._ready.clear()
                self._thread = threading.Thread(target=target, args=(self._generation,),
                                                name="deepscreen-job-events", daemon=True)
                self._thread.start()

    def _poll(self, generation: int) -> None:
        """Embedded mode: woken by announcements on this process's socket (core.local_events); one
        query for all waiters finds what no announcement told, every EMBEDDED_FALLBACK_SECONDS (every
        EMBEDDED_POLL_SECONDS where no socket could be bound)."""
        sock = local_events.bind()
        interval = EMBEDDED_POLL_SECONDS if sock is None else EMBEDDED_FALLBACK_SECONDS
        next_check = time.monotonic()  # at once: a job may have ended before the socket existed
        try:
            while generation == self._generation:
                if sock is None:
                    time.sleep(interval)
                else:
                    announced = local_events.receive(sock, max(0.0, next_check - time.monotonic()))
                    if generation != self._generation:  # reset meanwhile: the waiters now are not ours
                        break
                    if announced:
                        self.wake(announced)
                    if time.monotonic() < next_check:
                        continue
                next_check = time.monotonic() + interval
                with self._lock:
                    ids = list(self._waiters)
                try:
                    done = final_among(ids)
                except Exception as exc:  # the database briefly unavailable: waiters still re-read at their deadline
                    log.warning("long-poll check failed: %s", exc)
                    continue
                if done:
                    self.wake(done)
        finally:
            if sock is not None:
                local_events.close(sock)

    def wake(self, job_ids: list[str] | None = None) -> int:
        """Set the events of the waiters on ``job_ids`` (every waiter when None); returns how many."""
        with self._lock:
            if job_ids is None:
                targets = [w for group in self._waiters.values() for w in group]
            else:
                targets = [w for job_id in job_ids for w in self._waiters.get(job_id, ())]
        for waiter in targets:
            waiter.event.set()
        return len(targets)

    def _listen(self, generation: int) -> None:
        backoff = 0.1
        while generation == self._generation:
            pubsub = None
            try:
                client = status_cache.get_redis()
                if client is None:
                    return
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(status_cache.DONE_CHANNEL)
                self.healthy, backoff = True, 0.1
                self._ready.set()
                self.wake()  # anything announced while we were not listening: everyone re-reads
                while generation == self._generation:
                    message = pubsub.get_message(timeout=1.0)
                    ids: list[str] = []
                    while message is not None:  # drain what arrived together, then wake once
                        if message.get("type") == "message":
                            data = message["data"]
                            ids.append(data.decode() if isinstance(data, bytes) else str(data))
                        message = pubsub.get_message(timeout=0) if len(ids) < 1000 else None
                    if ids:
                        self.wake(ids)
            except (redis.RedisError, OSError, ValueError) as exc:
                if self.healthy:
                    log.warning("job-finished listener lost Redis (%s); long polls fall back to polling", exc)
                self.healthy = False
                self._ready.set()  # nobody should wait for a subscription that is not coming
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        pubsub.close()


EVENTS = JobEvents()


# Built once: the embedded poller runs it 20 times a second per web process, and a statement built
# per call costs SQLAlchemy a new cache key each time (a Core connection, not an ORM session, too).
_FINAL_AMONG = select(Job.id).where(Job.id.in_(bindparam("ids", expanding=True)), Job.status.in_(TERMINAL))


def final_among(job_ids: list[str], chunk: int = 500) -> list[str]:
    """Which of ``job_ids`` are final (one statement per ``chunk`` ids)."""
    done: list[str] = []
    if not job_ids:
        return done
    with get_engine().connect() as connection:
        for start in range(0, len(job_ids), chunk):
            done += connection.scalars(_FINAL_AMONG, {"ids": job_ids[start:start + chunk]})
    return done


def job_status(job_id: str) -> str | None:
    """The status column alone: the cheap probe the polling fallback repeats."""
    with session_scope() as session:
        return session.scalar(select(Job.status).where(Job.id == job_id))


def wait_for_final(job_id: str, seconds: float, read: Callable[[], dict[str, Any]], limit: int,
                   clock: Callable[[], float] = time.monotonic) -> tuple[dict[str, Any], bool]:
    """Read the job with ``read`` (which raises for a job the caller may not see) and, while it is not
    final, wait up to ``seconds`` for it to be. Returns the last document read and whether this
    request actually waited (False when ``limit`` waiters already hold this process)."""
    deadline = clock() + seconds
    with EVENTS.watch(job_id, limit) as waiter:
        doc = read()
        if waiter is None or doc.get("status") in TERMINAL:
            return doc, waiter is not None
        listening = bool(get_settings().redis_url)
        next_read = clock() + RECHECK_SECONDS
        while True:
            now = clock()
            if now >= deadline:
                return read(), True
            if not listening or EVENTS.healthy:  # woken by the listener (Redis) or the poller (embedded)
                if waiter.event.wait(min(deadline, next_read) - now):
                    waiter.event.clear()  # before the read: a finish after it sets the event again
                    doc, next_read = read(), clock() + RECHECK_SECONDS
                elif clock() >= next_read:
                    doc, next_read = read(), clock() + RECHECK_SECONDS
            else:
                if waiter.event.wait(min(DEGRADED_POLL_SECONDS, deadline - now)):
                    waiter.event.clear()
                if job_status(job_id) in TERMINAL:
                    doc = read()
            if doc.get("status") in TERMINAL:
                return doc, True
