"""werkzeug's multipart decoder, with its boundary found by ``bytes.find`` instead of a regex.

werkzeug 3.1 compiles two patterns per request (the boundary is random, so ``re``'s cache never
hits: 0.2 ms a request) and, once ``--boundary`` is in the buffer, runs the pattern over the whole
buffer from byte 0. The pattern opens with a choice of line breaks, so ``re`` tries it at every byte:
about 5 µs per KB, 0.25 ms per 512 px photo, 15 % of the web's CPU in the batch benchmark
(bench/profile_road.py). Here each ``--boundary`` is found with ``bytes.find``, the line break before
it is read directly, and only what follows it goes through werkzeug's pattern (boundary-free, compiled
once): the same match, leftmost first. The parts, limits and errors stay werkzeug's own;
tests/web/test_multipart.py compares both decoders on awkward bodies cut into random chunks.
"""

from __future__ import annotations

import logging
import re
from importlib.metadata import version

from werkzeug import formparser
from werkzeug.sansio.multipart import LINE_BREAK, Epilogue, MultipartDecoder, NeedData

log = logging.getLogger(__name__)

# What werkzeug's boundary patterns require after ``--boundary``: ``--`` (the last one, then optional
# blanks and line break), or optional blanks and a line break. Blanks are whitespace other than CR/LF.
_AFTER_BOUNDARY = re.compile(rb"(--[^\S\n\r]*%s?|[^\S\n\r]*%s)" % (LINE_BREAK, LINE_BREAK))
_PLACEHOLDER = b"deepscreen-placeholder-boundary"  # werkzeug compiles its patterns for this once, cached
CR, LF = 13, 10


class _Found:
    """The parts of an ``re.Match`` that werkzeug's decoder reads."""

    __slots__ = ("_end", "_start", "_tail")

    def __init__(self, start: int, end: int, tail: bytes) -> None:
        self._start, self._end, self._tail = start, end, tail

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end

    def group(self, index: int) -> bytes:
        if index != 1:
            raise IndexError(index)
        return self._tail


class _BoundaryFinder:
    """``search`` as werkzeug's ``preamble_re`` (line break before the boundary optional) or
    ``boundary_re`` (required) would answer it."""

    __slots__ = ("line_break_required", "marker")

    def __init__(self, boundary: bytes, line_break_required: bool) -> None:
        self.marker, self.line_break_required = b"--" + boundary, line_break_required

    def search(self, data: bytes | bytearray, pos: int = 0) -> _Found | None:
        at = data.find(self.marker, pos)
        while at >= 0:
            start = self._line_start(data, at, pos)
            tail = _AFTER_BOUNDARY.match(data, at + len(self.marker)) if start is not None else None
            if start is not None and tail is not None:
                return _Found(start, tail.end(), tail.group(1))
            at = data.find(self.marker, at + 1)
        return None

    def _line_start(self, data: bytes | bytearray, at: int, pos: int) -> int | None:
        """Where a match of this ``--boundary`` begins: at its line break (CRLF, LF or CR), else at
        the boundary itself where the line break may be left out, else nowhere."""
        if at - 2 >= pos and data[at - 2] == CR and data[at - 1] == LF:
            return at - 2
        if at - 1 >= pos and data[at - 1] in (CR, LF):
            return at - 1
        return None if self.line_break_required else at


class FastMultipartDecoder(MultipartDecoder):
    def __init__(self, boundary: bytes, max_form_memory_size: int | None = None, *,
                 max_parts: int | None = None) -> None:
        super().__init__(_PLACEHOLDER, max_form_memory_size, max_parts=max_parts)
        self.boundary = boundary
        self.preamble_re = _BoundaryFinder(boundary, line_break_required=False)  # type: ignore[assignment]
        self.boundary_re = _BoundaryFinder(boundary, line_break_required=True)  # type: ignore[assignment]


def _events(decoder: MultipartDecoder, body: bytes) -> list[object]:
    decoder.receive_data(body)
    decoder.receive_data(None)
    events: list[object] = []
    while not isinstance(event := decoder.next_event(), NeedData | Epilogue):
        events.append(event)
    return events


def _agrees_with_werkzeug() -> bool:
    """Whether this werkzeug still reads a small awkward body the same through both decoders: the
    decoder leans on werkzeug's internals (the two pattern attributes), so a werkzeug that changed
    them keeps its own decoder instead of failing uploads."""
    boundary = b"check"
    body = (b"preamble\r\n--check\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--checkX\r\n"
            b"\n--check \t\r\nContent-Disposition: form-data; name=\"b\"; filename=\"b\"\r\n\r\n\r\r\n"
            b"--check--\r\n")
    try:
        return _events(FastMultipartDecoder(boundary), body) == _events(MultipartDecoder(boundary), body)
    except Exception:  # any failure means: keep werkzeug's decoder
        return False


def install() -> bool:
    """Make werkzeug's form parser use the faster decoder (it looks the class up on each request).
    Idempotent; a werkzeug without that name, or whose decoder answers differently, is left alone
    (with a warning). Returns whether the faster decoder is in use."""
    if formparser.__dict__.get("MultipartDecoder") is FastMultipartDecoder:
        return True
    if formparser.__dict__.get("MultipartDecoder") is not MultipartDecoder or not _agrees_with_werkzeug():
        log.warning("werkzeug %s: multipart uploads parsed by werkzeug's own decoder (web/multipart.py "
                    "does not fit this version)", version("werkzeug"))
        return False
    formparser.MultipartDecoder = FastMultipartDecoder  # type: ignore[misc]
    return True
