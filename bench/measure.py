"""One measured run of a stack: start it, warm it up, let it settle, then drive the load while sampling
the CPU time of every process group, and read the inference processes' peak RSS before stopping it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from bench import load
from bench.proc_cpu import CpuSampler, snapshot, vm_hwm_kib, wait_cpu_quiet
from bench.round_trips import per_job
from bench.stacks import STACKS, Stack

LOAD_GENERATOR = "load generator (this process)"


@dataclass
class StackRun:
    mode: str
    load: load.LoadResult
    cpu: dict[str, float]  # CPU seconds per project group (web, workers, control, PostgreSQL, Redis)
    other_cpu: dict[str, float]  # measured but not the project's: the S3 stand-in, shared PostgreSQL helpers
    load_generator_cpu: float
    idle_cores: float  # the project groups' CPU use while idle, before the load (pollers, heartbeats)
    worker_hwm_mib: float
    inference_processes: int
    calls_per_job: dict[str, float] = field(default_factory=dict)  # service mode: Redis / PostgreSQL / S3

    @property
    def project_cpu(self) -> float:
        return sum(self.cpu.values())

    def cpu_ms_per_job(self) -> float:
        return 1e3 * self.project_cpu / self.load.jobs


Hook = Callable[[Stack], AbstractContextManager[object]]


def run_stack(mode: str, model: str, repo: Path, blobs: list[bytes], warm: list[bytes], clients: int = 8,
              extra_env: dict[str, str] | None = None, poll_interval: float = 0.25, max_poll_interval: float = 2.0,
              during: Hook | None = None, idle_seconds: float = 2.0, polling: str = "wait") -> StackRun:
    with STACKS[mode](model, repo, extra_env) as stack:
        load.warm_up(stack.url, stack.headers, warm)

        def project_pids() -> list[int]:
            snap = snapshot()
            return [p for finder in stack.groups.values() for p in finder(snap)]

        wait_cpu_quiet(project_pids, below=0.15, settle=1.0, timeout=30)
        with CpuSampler(dict(stack.groups)) as idle:
            time.sleep(idle_seconds)
        idle_cores = sum(idle.seconds.values()) / idle_seconds
        groups = {**stack.groups, **stack.others, LOAD_GENERATOR: lambda snap: [os.getpid()]}
        before = stack.counters() if stack.counters else {}
        with CpuSampler(groups) as sampler, (during(stack) if during else nullcontext()):
            result = load.run(stack.url, stack.headers, blobs, clients, poll_interval,
                              max_poll_interval=max_poll_interval, polling=polling)
        calls = per_job(before, stack.counters(), result.jobs) if stack.counters else {}
        snap = snapshot()
        hwm = [vm_hwm_kib(p) or 0 for p in stack.groups["inference workers"](snap)]
        seconds = sampler.seconds
        return StackRun(
            mode=mode, load=result, cpu={k: seconds[k] for k in stack.groups},
            other_cpu={k: seconds[k] for k in stack.others}, load_generator_cpu=seconds[LOAD_GENERATOR],
            idle_cores=idle_cores, worker_hwm_mib=max(hwm, default=0) / 1024,
            inference_processes=stack.inference_processes, calls_per_job=calls,
        )


def postgres_backend_cpu(run: StackRun) -> float:
    """CPU of processes outside this benchmark's process tree (PostgreSQL backends of its database)."""
    return sum(v for k, v in run.cpu.items() if k.startswith("PostgreSQL"))
