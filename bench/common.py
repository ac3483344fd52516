"""What every benchmark prints around its table: the exact command, the machine, the date, and whether
the machine was shared while it ran (then the figures are provisional).

"Shared" is measured, not guessed: the CPU time the whole machine spent during the run (/proc/stat)
minus the CPU time of the processes the benchmark itself started or measured. Other engineers'
training on the same cores shows up there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED_CORES = 0.25  # other processes busier than this (in cores, averaged over the run): provisional


def command_line() -> str:
    """The command as typed from the repository root (what the docs quote)."""
    argv = list(sys.argv)
    script = Path(argv[0])
    if script.suffix == ".py" and script.exists():
        with contextlib.suppress(ValueError):
            argv[0] = str(script.resolve().relative_to(ROOT))
    return ".venv/bin/python " + " ".join(shlex.quote(a) for a in argv)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    from core.settings import usable_cores

    return usable_cores()


def machine() -> str:
    return (f"{cpu_model()}, {cores()} usable cores ({os.cpu_count()} online), "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, no GPU used")


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores; idle and iowait excluded)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Shared:
    """How busy the rest of the machine was while a benchmark ran."""

    started: float = 0.0
    busy_at_start: float = 0.0
    other_cores: float = 0.0
    load_at_start: float = 0.0

    def start(self) -> Shared:
        self.started, self.busy_at_start = time.monotonic(), busy_seconds()
        self.load_at_start = os.getloadavg()[0]
        return self

    def stop(self, own_cpu_seconds: float) -> Shared:
        """``own_cpu_seconds``: CPU time of everything the benchmark ran or measured during the run."""
        elapsed = max(1e-9, time.monotonic() - self.started)
        self.other_cores = max(0.0, (busy_seconds() - self.busy_at_start - own_cpu_seconds) / elapsed)
        return self

    @property
    def provisional(self) -> bool:
        return self.other_cores > SHARED_CORES

    def line(self) -> str:
        verdict = ("PROVISIONAL: measured while the machine was shared" if self.provisional
                   else "the machine was otherwise quiet")
        return (f"{verdict} (other processes used {self.other_cores:.2f} of {cores()} cores on average during the "
                f"run; load average {self.load_at_start:.1f} at the start)")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that were waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def header(title: str, shared: Shared | None = None) -> str:
    lines = [f"# {title}", f"command: {command_line()}", f"machine: {machine()}",
             f"date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"]
    if shared is not None:
        lines.append(shared.line())
    return "\n".join(lines)


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into docs/benchmarks.md)."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def add_repository_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", type=Path,
                        default=Path(os.environ.get("MODEL_REPOSITORY", ROOT / "model_repository")))


def add_stack_arguments(parser: argparse.ArgumentParser, mode: str = "both") -> None:
    """The options of every benchmark that starts the stacks: --mode, --model, --seed, --repository."""
    parser.add_argument("--mode", choices=["embedded", "service", "both"], default=mode)
    parser.add_argument("--model", default="deepfake")
    parser.add_argument("--seed", type=int, default=0)
    add_repository_argument(parser)


def stack_modes(mode: str) -> list[str]:
    """--mode's stacks, in the order they run."""
    return ["embedded", "service"] if mode == "both" else [mode]


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


T = TypeVar("T")


def in_client_threads(client: Callable[[list[T]], None], items: list[T], clients: int) -> None:
    """Run ``client`` in ``clients`` threads at once, each on every ``clients``-th item, as that many
    concurrent API users would; the first error any of them raised is raised here, after all ended."""
    errors: list[BaseException] = []

    def guarded(share: list[T]) -> None:
        try:
            client(share)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(items[i::clients],)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
