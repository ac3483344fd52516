"""Job-finished announcements between the processes of one machine, for the embedded mode (no Redis).

A web process holding long polls binds a UNIX datagram socket, ``$DATA_DIR/events/<pid>.sock``; a
process that makes jobs final (a worker recording a batch, a sweep failing a job) sends their ids to
every socket in that folder. It is the embedded mode's stand-in for Redis pub/sub: a waiter is woken
the moment its job ends instead of at the next tick of a 50 ms database poll, and a web process with
waiters stops querying SQLite 20 times a second.

An announcement is a hint, never the truth: a woken waiter re-reads the job from the database, and
the listener still checks the database once a second (core.job_events) for anything missed (a full
socket buffer drops a datagram; a process that finished a job before the listener existed announced
it to nobody). Sending never blocks and never raises: a socket whose process is gone is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

from core.settings import get_settings

log = logging.getLogger(__name__)
IDS_PER_DATAGRAM = 200  # 36-character ids: ~7 KB, far below a datagram's limit


def folder() -> Path:
    return get_settings().data_dir / "events"


def bind() -> socket.socket | None:
    """This process's listening socket, or None where one cannot be made (the caller then polls).

    The path of a process that died with this pid is replaced: only a live process owns its name."""
    path = folder() / f"{os.getpid()}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock.bind(str(path))  # OSError for a path longer than AF_UNIX allows (~107 bytes)
    except OSError as exc:
        sock.close()
        log.info("no job-finished socket at %s (%s): long polls check the database every 50 ms", path, exc)
        return None
    return sock


def close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        os.unlink(sock.getsockname())
    sock.close()


def receive(sock: socket.socket, timeout: float) -> list[str]:
    """The ids announced within ``timeout`` seconds (all the datagrams already waiting, then none)."""
    ids: list[str] = []
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
        sock.setblocking(False)
        while True:
            ids += data.decode("ascii", "replace").split()
            data = sock.recv(65536)
    except (TimeoutError, BlockingIOError, InterruptedError):
        pass
    return ids


def announce(job_ids: list[str]) -> int:
    """Send ``job_ids`` to every listening web process; returns how many sockets took them."""
    if not job_ids:
        return 0
    try:
        paths = [p for p in folder().iterdir() if p.suffix == ".sock"]
    except OSError:
        return 0  # no folder: nobody has ever listened
    if not paths:
        return 0
    chunks = [" ".join(job_ids[i:i + IDS_PER_DATAGRAM]).encode() for i in range(0, len(job_ids), IDS_PER_DATAGRAM)]
    reached = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for path in paths:
            try:
                for chunk in chunks:
                    sender.sendto(chunk, str(path))
                reached += 1
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    path.unlink()  # its process is gone
            except OSError:
                pass  # a full buffer (BlockingIOError) or a permission problem: the fallback poll covers it
    return reached
