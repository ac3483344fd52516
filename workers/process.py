"""What one inference process holds: its identity, its fetch threads, and the heartbeat that renews
its job leases and tells the web what it serves.

Created lazily in the process that runs tasks (a prefork child, or the worker itself with the solo
pool), never in a parent that forks: threads and connections do not survive fork.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from core import job_queue, worker_registry
from core.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class WorkerProcess:
    identity: str
    fetch_pool: ThreadPoolExecutor
    planner: ThreadPoolExecutor  # claims and prepares the next batch while the models run
    queues: str = ""
    inference_queues: list[str] = field(default_factory=list)  # whose jobs this process claims
    info: dict[str, Any] = field(default_factory=dict)
    hooks: list[Callable[[], None]] = field(default_factory=list)  # run on each heartbeat (follow promotions)
    held: set[str] = field(default_factory=set)  # jobs claimed and not yet recorded: their leases are renewed
    _held_lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_heartbeat(self) -> None:
        interval = max(1.0, get_settings().lease_seconds / 3)
        self._thread = threading.Thread(target=self._beat, args=(interval,), name="deepscreen-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self, interval: float) -> None:
        settings = get_settings()
        while not self._stop.is_set():
            try:
                with self._held_lock:
                    held = list(self.held)
                job_queue.extend_leases(self.identity, held, settings.lease_seconds)
                for hook in self.hooks:
                    hook()
                worker_registry.beat(self.identity, socket.gethostname(), os.getpid(), self.queues, self.info)
            except Exception as exc:  # the database may be down for a while; leases then run out, as they should
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(interval)

    def hold(self, job_ids: list[str]) -> None:
        with self._held_lock:
            self.held.update(job_ids)

    def let_go(self, job_ids: list[str]) -> None:
        with self._held_lock:
            self.held.difference_update(job_ids)

    def stop(self) -> None:
        self._stop.set()
        self.fetch_pool.shutdown(wait=False, cancel_futures=True)
        self.planner.shutdown(wait=False, cancel_futures=True)
        try:
            worker_registry.forget(self.identity)
        except Exception as exc:
            log.info("could not remove worker %s from the registry: %s", self.identity, exc)


_current: WorkerProcess | None = None
_pid: int | None = None
_lock = threading.Lock()


def current() -> WorkerProcess:
    """This process's WorkerProcess, made on first use (and made anew after a fork)."""
    global _current, _pid
    with _lock:
        if _current is None or _pid != os.getpid():
            settings = get_settings()
            _current = WorkerProcess(
                identity=job_queue.worker_identity(),
                fetch_pool=ThreadPoolExecutor(settings.fetch_thread_count, thread_name_prefix="deepscreen-fetch"),
                planner=ThreadPoolExecutor(1, thread_name_prefix="deepscreen-plan"),
            )
            _pid = os.getpid()
            _current.start_heartbeat()
        return _current


def stop_current() -> None:
    """Stop this process's heartbeat and threads, if it has any (a prefork parent has none)."""
    global _current
    with _lock:
        worker, _current = (_current, None) if _pid == os.getpid() else (None, _current)
    if worker is not None:
        worker.stop()


def reset() -> None:
    """Forget the inherited process state (after fork)."""
    global _current, _pid
    with _lock:
        _current, _pid = None, None
