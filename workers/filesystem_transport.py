"""kombu's filesystem transport (the embedded broker), polling fast while messages flow.

The filesystem transport cannot wait on a folder: an idle consumer looks for a message file, sleeps
``polling_interval`` and looks again. With one fixed interval a client that sends photos one after
another waits most of an interval for each (its next message lands just after the worker's last look):
at 50 ms that was 36 ms of a 58 ms verdict (bench/verdict_latency.py). Polling every few
milliseconds all the time would cost CPU on an idle laptop. So the interval follows the traffic:
``busy_polling_interval`` for ``busy_seconds`` after the last message this consumer received, then
``polling_interval`` again. Messages, files and acknowledgements are kombu's own; only the wait
between two empty looks changes.
"""

from __future__ import annotations

from time import monotonic, sleep
from typing import Any, cast

from kombu.transport import filesystem
from kombu.transport.virtual import Empty

BUSY_POLLING_INTERVAL = 0.005
BUSY_SECONDS = 2.0


class Transport(filesystem.Transport):
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
