"""kombu's filesystem transport (the embedded broker), polling fast while messages flow.

The filesystem transport cannot wait on a folder: an idle consumer looks for a message file, sleeps
``polling_interval`` and looks again. With one fixed interval a client that sends photos one after
another waits most of an interval for each (its next message lands just after the worker's last look):
at 50 ms that was 36 ms of a 58 ms verdict (bench/verdict_latency.py). Polling every few
milliseconds all the time would cost CPU on an idle laptop. So the interval follows the traffic:
``busy_polling_interval`` for ``busy_seconds`` after the last message this consumer received, then
``polling_interval`` again.

kombu's writer also creates the message file and then writes it, so a reader that looks in between
takes an empty file: kombu's reader had already removed it when the JSON failed to parse, the error
stopped the worker (Celery: "Unrecoverable error"), and the job waited for the sweep to re-send its
message (30 s). At a 50 ms poll that was rare; at 5 ms bench/verdict_latency.py hit it in most runs.
So a message is written under a hidden name and renamed into place (a rename is atomic), a reader
takes a message by renaming it within the folder, and a file that still does not parse is logged and
skipped instead of stopping the worker. Names, content and order are kombu's.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from contextlib import suppress
from pathlib import Path
from time import monotonic, sleep
from typing import Any, cast

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.transport.virtual import Empty
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

BUSY_POLLING_INTERVAL = 0.005
BUSY_SECONDS = 2.0
LEFTOVER_AFTER_SECONDS = 60.0  # a hidden file lives microseconds unless its process died mid-way
PARTIAL, TAKEN = ".part", ".read"  # suffixes of a message being written / being read (hidden names)


def remove_leftovers(folder: Path, older_than: float = LEFTOVER_AFTER_SECONDS) -> int:
    """Delete the hidden files a killed writer (``.….part``) or reader (``.….read``) left in the
    broker folder; their jobs were re-sent by the sweep. Returns how many were removed."""
    removed = 0
    cutoff = time.time() - older_than
    for path in folder.glob(".*"):
        if path.suffix in (PARTIAL, TAKEN) and path.is_file():
            with suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
    return removed


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """kombu's file name and content, written under a hidden name first (readers match
        ``*.<queue>.msg``, so they skip ``.*.part``) and renamed into place when complete."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}{PARTIAL}")
        try:
            with open(partial, "wb") as f:
                f.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str) -> Any:
        """The oldest message of ``queue``, taken by renaming its file to a hidden name in the same
        folder: a rename is atomic, so of two workers looking at once exactly one gets it. (kombu moved
        it to the temp folder, which is a copy, not atomic, where /tmp is another file system.) A file
        that does not parse is logged and skipped, so one bad file never stops a worker; its job is
        re-sent by the sweep."""
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for name in sorted(os.listdir(folder)):
            if name.partition(".")[2] != wanted:  # kombu's test; hidden files never pass it
                continue
            taken = os.path.join(folder, f".{os.getpid()}-{name}{TAKEN}")
            try:
                os.rename(os.path.join(folder, name), taken)
            except OSError:
                continue  # another worker took it first
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
            finally:
                with suppress(OSError):
                    os.unlink(taken)
            try:
                return loads(payload)
            except ValueError as exc:  # json.JSONDecodeError
                log.error("skipped an unreadable message file %s in queue %s: %s", name, queue, exc)
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self.busy_polling_interval = float(options.get("busy_polling_interval", BUSY_POLLING_INTERVAL))
        self.busy_seconds = float(options.get("busy_seconds", BUSY_SECONDS))
        self.last_message = float("-inf")  # monotonic time of the last message received

    def interval(self, now: float) -> float:
        """The wait before the next look: short just after traffic, the idle interval otherwise."""
        if now - self.last_message < self.busy_seconds:
            return min(self.busy_polling_interval, self.polling_interval)
        return self.polling_interval

    def drain_events(self, connection: Any, **kwargs: Any) -> None:
        """kombu's loop (virtual.Transport.drain_events) with the wait taken from ``interval``."""
        timeout: float | None = kwargs.get("timeout")
        get = cast(Any, self.cycle).get
        started = monotonic()
        while True:
            try:
                get(self._deliver, timeout=timeout)
            except Empty:
                now = monotonic()
                if timeout is not None and now - started >= timeout:
                    raise TimeoutError from None  # socket.timeout, which kombu's callers expect
                wait = self.interval(now)
                if timeout:
                    wait = min(wait, max(0.0, timeout - (now - started)))
                sleep(wait)
            else:
                self.last_message = monotonic()
                return
