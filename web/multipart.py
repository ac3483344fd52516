"""werkzeug's multipart decoder with its boundary search started where a boundary can first be.

werkzeug 3.1 checks for ``--boundary`` with ``bytes.find``, and when it is in the buffer runs its
boundary pattern over the whole buffer from byte 0. The pattern opens with a choice of line breaks, so
``re`` tries it at every byte: about 5 µs per KB, 0.25 ms per 512 px photo, 15 % of the web's CPU in
the batch benchmark (bench/profile_road.py). A match cannot start before the first ``--boundary``
less its line break (at most 2 bytes), so searching from there finds the same match, leftmost first.
The parts, limits and errors are werkzeug's own; tests/web/test_multipart.py compares both decoders.
"""

from __future__ import annotations

import re

from werkzeug import formparser
from werkzeug.sansio.multipart import MultipartDecoder

LONGEST_LINE_BREAK = 2  # werkzeug's LINE_BREAK is \r\n, \n or \r


class _SearchFromFirstMarker:
    """A compiled boundary pattern whose ``search`` skips the bytes before the first ``marker``."""

    __slots__ = ("marker", "pattern")

    def __init__(self, pattern: re.Pattern[bytes], marker: bytes) -> None:
        self.pattern, self.marker = pattern, marker

    def search(self, data: bytes | bytearray, pos: int = 0) -> re.Match[bytes] | None:
        first = data.find(self.marker, pos)
        if first < 0:
            return None
        return self.pattern.search(data, max(pos, first - LONGEST_LINE_BREAK))


class FastMultipartDecoder(MultipartDecoder):
    def __init__(self, boundary: bytes, max_form_memory_size: int | None = None, *,
                 max_parts: int | None = None) -> None:
        super().__init__(boundary, max_form_memory_size, max_parts=max_parts)
        self.boundary_re = _SearchFromFirstMarker(self.boundary_re, b"--" + boundary)  # type: ignore[assignment]


def install() -> None:
    """Make werkzeug's form parser use the faster decoder (it looks the class up on each request).
    Idempotent; a werkzeug that no longer has the name is left alone."""
    if getattr(formparser, "MultipartDecoder", None) is MultipartDecoder:
        formparser.MultipartDecoder = FastMultipartDecoder  # type: ignore[misc]
