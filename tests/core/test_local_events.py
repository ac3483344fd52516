"""core.local_events: job-finished announcements over UNIX datagram sockets (the embedded mode's
stand-in for Redis pub/sub), between real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest


@pytest.fixture()
def events_dir(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from core.settings import get_settings

    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield tmp_path / "data" / "events"
    monkeypatch.undo()
    get_settings.cache_clear()


def test_an_announcement_from_another_process_reaches_every_listener(events_dir) -> None:  # type: ignore[no-untyped-def]
    from core import local_events

    sock = local_events.bind()
    assert sock is not None and (events_dir / f"{os.getpid()}.sock").exists()
    try:
        ids = [f"job-{n:04d}" for n in range(450)]  # more than one datagram's worth
        sender = subprocess.run(
            [sys.executable, "-c", "import sys; from core import local_events; "
                                   "print(local_events.announce(sys.argv[1:]))", *ids],
            env={**os.environ, "DATA_DIR": str(events_dir.parent)}, capture_output=True, text=True, timeout=60)
        assert sender.returncode == 0, sender.stderr
        assert sender.stdout.strip() == "1"
        received: list[str] = []
        deadline = time.monotonic() + 5
        while len(received) < len(ids) and time.monotonic() < deadline:
            received += local_events.receive(sock, 0.5)
        assert received == ids
        assert local_events.receive(sock, 0.05) == []  # nothing more, and a quiet socket times out
    finally:
        local_events.close(sock)
    assert not (events_dir / f"{os.getpid()}.sock").exists()


def test_a_dead_listener_s_socket_is_removed_and_nothing_raises(events_dir) -> None:  # type: ignore[no-untyped-def]
    from core import local_events

    assert local_events.announce(["early"]) == 0  # no folder yet: nobody listens
    dead = subprocess.run(  # a process that bound its socket and died without removing it (kill -9)
        [sys.executable, "-c", "import os; from core import local_events; s = local_events.bind(); "
                               "print(s.getsockname()); os._exit(0)"],
        env={**os.environ, "DATA_DIR": str(events_dir.parent)}, capture_output=True, text=True, timeout=60)
    stale = events_dir / os.path.basename(dead.stdout.strip())
    assert stale.exists()
    live = local_events.bind()
    assert live is not None
    try:
        assert local_events.announce(["a", "b"]) == 1  # the live one; the dead one refused
        assert not stale.exists()
        assert local_events.receive(live, 1.0) == ["a", "b"]
    finally:
        local_events.close(live)
