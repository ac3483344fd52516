"""Inference processes lower their CPU priority (WORKER_NICE), so on a shared box the web answers
first; the prefork parent, which runs no model, keeps its own."""

from __future__ import annotations

import os

from core.settings import get_settings
from tests.support.processes import wait_for


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])  # field 19 of stat, counted after the name


def test_inference_process_runs_at_worker_nice(worker) -> None:  # type: ignore[no-untyped-def]
    base = niceness(os.getpid())
    expected = min(19, base + get_settings().worker_nice)
    assert get_settings().worker_nice > 0  # the default: the test would prove nothing at 0
    pool = worker.pool_pid()
    wait_for(lambda: niceness(pool) == expected or None, 30, what=f"the pool process at niceness {expected}")
    assert worker.proc is not None and niceness(worker.proc.pid) == base
