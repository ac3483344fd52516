"""A small process supervisor for the embedded mode: start children, restart any that dies, stop all
on Ctrl-C / SIGTERM.

Restarting matters for the guarantees: a worker killed with SIGKILL (the OOM killer, a user) comes
back, and the jobs it held return to the queue through their leases. A child that keeps dying
(more than MAX_RESTARTS within RESTART_WINDOW seconds) stops everything with a message rather than
looping for ever.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field

import click

MAX_RESTARTS = 10
RESTART_WINDOW = 60.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: deque[float] = field(default_factory=deque)


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[Child] = []
        self.stopping = False

    def add(self, name: str, argv: list[str]) -> None:
        self.children.append(Child(name, argv))

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env)

    def _stop(self, *_args: object) -> None:
        self.stopping = True

    def run(self, poll: float = 0.5) -> None:
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        for child in self.children:
            self._spawn(child)
        try:
            while not self.stopping:
                for child in self.children:
                    if child.proc is not None and child.proc.poll() is not None:
                        self._restart(child)
                time.sleep(poll)
        finally:
            self.shutdown()

    def _restart(self, child: Child) -> None:
        assert child.proc is not None
        now = time.monotonic()
        while child.restarts and now - child.restarts[0] > RESTART_WINDOW:
            child.restarts.popleft()
        if len(child.restarts) >= MAX_RESTARTS:
            click.echo(f"{child.name} keeps dying (exit {child.proc.returncode}); stopping everything", err=True)
            self.stopping = True
            return
        click.echo(f"{child.name} exited with {child.proc.returncode}; restarting it", err=True)
        child.restarts.append(now)
        self._spawn(child)

    def shutdown(self, grace: float = 20.0) -> None:
        procs = [c.proc for c in self.children if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
