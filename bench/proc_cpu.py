"""CPU time and memory of processes, read from /proc (Linux): utime+stime of /proc/<pid>/stat, VmHWM
of /proc/<pid>/status.

A sampler thread re-reads every process of a few named groups (a group is a function from one
/proc snapshot to pids: a process tree, PostgreSQL backends of one database, a server's pid) a few
times a second and keeps, per process, its CPU time when first seen and when last seen. A process
that started during the run counts from zero; one that ended between two samples loses at most one
interval of its time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # clock ticks after boot: tells a reused pid apart
    cpu: float  # seconds, user + system
    cmdline: str


def read(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # after the ")": state ppid ... utime(12) stime(13) ... starttime(20), numbered from state = 0
    return Proc(pid, int(fields[1]), int(fields[19]), (int(fields[11]) + int(fields[12])) / TICK, cmdline)


def snapshot() -> dict[int, Proc]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := read(int(entry))) is not None:
            procs[proc.pid] = proc
    return procs


def tree(snap: dict[int, Proc], roots: Iterable[int]) -> set[int]:
    """``roots`` and all their descendants in ``snap``."""
    children: dict[int, list[int]] = {}
    for proc in snap.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = set(), [r for r in roots if r in snap]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def boot_ticks_now() -> int:
    """Now, in the clock ticks after boot that /proc/<pid>/stat's starttime uses."""
    return int(float(Path("/proc/uptime").read_text().split()[0]) * TICK)


Finder = Callable[[dict[int, Proc]], Iterable[int]]


@dataclass
class CpuSampler:
    """CPU seconds per named group over a run (``with CpuSampler(groups) as s: ...; s.seconds``)."""

    groups: dict[str, Finder]
    interval: float = 0.2
    first: dict[tuple[str, int, int], float] = field(default_factory=dict)
    last: dict[tuple[str, int, int], float] = field(default_factory=dict)
    cmdlines: dict[tuple[str, int, int], str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started_ticks: int = 0

    def sample(self) -> None:
        snap = snapshot()
        for name, finder in self.groups.items():
            for pid in finder(snap):
                proc = snap.get(pid)
                if proc is None:
                    continue
                key = (name, pid, proc.start)
                if key not in self.first:  # born during the run: all its time is the run's
                    self.first[key] = 0.0 if proc.start >= self._started_ticks else proc.cpu
                    self.cmdlines[key] = proc.cmdline
                self.last[key] = proc.cpu

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> CpuSampler:
        self._started_ticks = boot_ticks_now()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    @property
    def seconds(self) -> dict[str, float]:
        out = dict.fromkeys(self.groups, 0.0)
        for key, cpu in self.last.items():
            out[key[0]] += cpu - self.first[key]
        return out


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size of a live process (VmHWM), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def wait_cpu_quiet(pids: Callable[[], Iterable[int]], below: float = 0.05, settle: float = 1.0,
                   timeout: float = 60) -> None:
    """Wait until the given processes use less than ``below`` cores over ``settle`` seconds (start-up
    work such as model loading is over), or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = {p: read(p) for p in pids()}
        time.sleep(settle)
        used = sum(after.cpu - b.cpu for p, b in before.items()
                   if b and (after := read(p)) and after.start == b.start)
        if used / settle < below:
            return
