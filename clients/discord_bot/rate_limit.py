"""Sliding-window limits per key (a user, a guild): a busy server or one noisy user cannot make the
bot submit without bound. In memory: one bot process is one limiter."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

from clients.discord_bot.config import Rate


class SlidingWindow:
    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self._hits: defaultdict[object, deque[float]] = defaultdict(deque)

    def allow(self, key: object) -> bool:
        """Count one use for ``key`` if it is under its limit; False (and nothing counted) otherwise."""
        now = self.clock()
        hits = self._hits[key]
        while hits and hits[0] <= now - self.rate.seconds:
            hits.popleft()
        if len(hits) >= self.rate.count:
            return False
        hits.append(now)
        return True
