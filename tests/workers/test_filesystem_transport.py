"""The embedded broker's transport: kombu's filesystem transport over a real folder, with the wait
between empty looks short just after traffic and the idle interval otherwise.

The transport's clock is a fake one that ``sleep`` advances, so the test asserts which waits the
transport asked for, not how long the machine took; the messages are real files read by kombu.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport.virtual import BrokerState, Empty

from core.settings import Settings
from workers import filesystem_transport
from workers.celery_app import celery_config

IDLE, BUSY = 1 / 16, 1 / 128  # binary fractions: the fake clock adds them up exactly


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        recorded.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(filesystem_transport, "sleep", sleep)
    monkeypatch.setattr(filesystem_transport, "monotonic", lambda: clock[0])
    return recorded


@pytest.fixture
def connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # kombu keeps declared exchanges in a process-wide state; a fresh one, so each test's folder
    # gets its own exchange table
    monkeypatch.setattr(filesystem_transport.Transport, "global_state", BrokerState())
    folder = tmp_path / "broker"
    for sub in ("out", "processed", "control"):
        (folder / sub).mkdir(parents=True)
    options = {"data_folder_in": str(folder / "out"), "data_folder_out": str(folder / "out"),
               "processed_folder": str(folder / "processed"), "control_folder": str(folder / "control"),
               "store_processed": False,
               "polling_interval": IDLE, "busy_polling_interval": BUSY, "busy_seconds": 2.0}
    with Connection("filesystem://", transport="workers.filesystem_transport:Transport",
                    transport_options=options) as conn:
        yield conn


def _consume(conn: Connection, received: list[object]):
    queue = Queue("inference", Exchange("inference", type="direct"), routing_key="inference")
    consumer = conn.Consumer([queue], callbacks=[lambda body, message: (received.append(body), message.ack())])
    consumer.consume()
    return queue


def test_message_is_delivered_and_later_empty_looks_wait_the_busy_interval(connection, waits) -> None:
    received: list[object] = []
    queue = _consume(connection, received)
    assert isinstance(connection.transport, filesystem_transport.Transport)

    connection.Producer().publish({"job": "a"}, exchange=queue.exchange, routing_key="inference", declare=[queue])
    connection.drain_events(timeout=1)
    assert received == [{"job": "a"}]
    assert waits == []  # the file was there at the first look

    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=10 * BUSY)
    assert waits == [BUSY] * 10  # just after a message: short waits


def test_without_recent_traffic_empty_looks_wait_the_idle_interval(connection, waits) -> None:
    _consume(connection, [])
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=4 * IDLE)
    assert waits == [IDLE] * 4


def test_a_wait_never_runs_past_the_callers_timeout(connection, waits) -> None:
    _consume(connection, [])
    with pytest.raises(socket.timeout):
        connection.drain_events(timeout=2 * IDLE + 1 / 32)
    assert waits == [IDLE, IDLE, 1 / 32]


def test_busy_window_ends_after_busy_seconds(connection) -> None:
    transport = connection.transport
    assert transport.interval(100.0) == IDLE  # no message yet
    transport.last_message = 100.0
    assert transport.interval(101.75) == BUSY
    assert transport.interval(102.25) == IDLE


def test_embedded_mode_uses_it_and_service_mode_does_not(tmp_path: Path) -> None:
    embedded = celery_config(Settings(data_dir=tmp_path, broker_url="filesystem://"))  # whatever the env says
    assert embedded["broker_transport"] == "workers.filesystem_transport:Transport"
    assert embedded["broker_transport_options"]["busy_polling_interval"] < \
        embedded["broker_transport_options"]["polling_interval"]
    service = celery_config(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0"))
    assert service["broker_transport"] is None


def test_a_message_is_invisible_until_completely_written(connection, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[object] = []
    queue = _consume(connection, received)
    channel = connection.default_channel
    seen_while_writing: list[bool] = []
    rename = os.replace

    def replace(src: str, dst: str) -> None:  # the moment between writing the file and publishing it
        try:
            channel._get("inference")
            seen_while_writing.append(True)
        except Empty:
            seen_while_writing.append(False)
        rename(src, dst)

    monkeypatch.setattr(filesystem_transport.os, "replace", replace)
    connection.Producer().publish({"job": "b"}, exchange=queue.exchange, routing_key="inference", declare=[queue])
    assert seen_while_writing == [False]
    connection.drain_events(timeout=1)
    assert received == [{"job": "b"}]


def test_an_unreadable_message_file_is_skipped_not_fatal(connection, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    received: list[object] = []
    queue = _consume(connection, received)
    # as a torn write left it; "0_" sorts before every real name (milliseconds, no leading zero)
    (tmp_path / "broker" / "out" / "0_empty.inference.msg").write_bytes(b"")
    connection.Producer().publish({"job": "c"}, exchange=queue.exchange, routing_key="inference", declare=[queue])
    with caplog.at_level(logging.ERROR, logger="workers.filesystem_transport"):
        connection.drain_events(timeout=1)
    assert received == [{"job": "c"}]
    assert "unreadable message file" in caplog.text
    assert not (tmp_path / "broker" / "out" / "0_empty.inference.msg").exists()


def test_a_message_another_worker_took_first_is_skipped(connection, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = itertools.count(1000)  # file names start with the time in ms: "d" is named first, whatever the clock
    monkeypatch.setattr(filesystem_transport, "monotonic", lambda: float(next(clock)))
    received: list[object] = []
    queue = _consume(connection, received)
    producer = connection.Producer()
    for job in ("d", "e"):
        producer.publish({"job": job}, exchange=queue.exchange, routing_key="inference", declare=[queue])
    out = tmp_path / "broker" / "out"
    first = sorted(p.name for p in out.iterdir())[0]
    rename = os.rename

    def rename_after_a_rival(src: str, dst: str) -> None:  # a rival worker renames the oldest file first
        if os.path.basename(src) == first:
            rename(src, str(out / ".rival.read"))
        rename(src, dst)

    monkeypatch.setattr(filesystem_transport.os, "rename", rename_after_a_rival)
    connection.drain_events(timeout=1)
    assert received == [{"job": "e"}]  # "d" is the rival's
    assert sorted(p.name for p in out.iterdir()) == [".rival.read"]  # the reader left nothing behind


def test_reading_never_goes_through_the_temp_folder(connection, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # kombu moved each message to the temp folder: a copy, not a rename, where /tmp is another file system
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    received: list[object] = []
    queue = _consume(connection, received)
    connection.Producer().publish({"job": "f"}, exchange=queue.exchange, routing_key="inference", declare=[queue])
    connection.drain_events(timeout=1)
    assert received == [{"job": "f"}]
    assert list((tmp_path / "broker" / "out").iterdir()) == []


def test_leftovers_of_killed_writers_and_readers_are_removed_after_a_minute(tmp_path: Path) -> None:
    old = time.time() - 120
    names = {".123_a.inference.msg.part": old, ".77-124_b.inference.msg.read": old,  # left by killed processes
             ".125_c.inference.msg.part": time.time(),  # being written now
             "126_d.inference.msg": old, ".keep": old}  # a message waiting, and not ours
    for name, mtime in names.items():
        (tmp_path / name).write_bytes(b"{}")
        os.utime(tmp_path / name, (mtime, mtime))
    assert filesystem_transport.remove_leftovers(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".125_c.inference.msg.part", ".keep", "126_d.inference.msg"]
