"""web.multipart's decoder gives werkzeug's own parts, errors included, however the body is chunked."""

from __future__ import annotations

import io
import random

import pytest
from werkzeug import formparser
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData, Preamble

from bench.photos import face_photos
from web.app import create_app
from web.multipart import FastMultipartDecoder, _BoundaryFinder

BOUNDARY = b"dsBoundary7MA4YWxkTrZu0gW"


def decode(decoder_class: type[MultipartDecoder], body: bytes, chunks: list[int]) -> list[object]:
    """The events for ``body`` fed in pieces of the given sizes (then the rest), data of a part joined."""
    decoder = decoder_class(BOUNDARY, max_form_memory_size=None, max_parts=1000)
    events: list[object] = []
    at = 0
    try:
        for size in [*chunks, len(body)]:
            piece, at = body[at:at + size], at + size
            decoder.receive_data(piece if piece else None)
            while True:
                event = decoder.next_event()
                if isinstance(event, NeedData | Epilogue):
                    break
                if isinstance(event, Data) and events and isinstance(events[-1], bytearray):
                    events[-1] += event.data
                elif isinstance(event, Data):
                    events.append(bytearray(event.data))
                elif isinstance(event, Field | File):
                    events.append((type(event).__name__, event.name, dict(event.headers)))
                elif isinstance(event, Preamble):
                    events.append(("preamble", bytes(event.data)))
            if not piece:
                break
        events.append(("state", decoder.state.name))
    except ValueError as exc:
        events.append(("error", str(exc)))
    return events


def body(parts: list[tuple[str, bytes]], line_break: bytes = b"\r\n", epilogue: bool = True) -> bytes:
    out = b""
    for n, (name, data) in enumerate(parts):
        headers = f'Content-Disposition: form-data; name="{name}"; filename="{n}.bin"'.encode()
        out += b"--" + BOUNDARY + line_break + headers + line_break + line_break + data + line_break
    return out + (b"--" + BOUNDARY + b"--" + line_break if epilogue else b"")


def tricky_payloads(rng: random.Random) -> list[bytes]:
    """Bytes a boundary search can trip on: line breaks everywhere, the marker without a line break
    before it, the marker followed by something that is not a boundary's end, a real photo."""
    noise = bytes(rng.choice(b"\r\n-ab") for _ in range(3000))
    return [
        noise,
        b"x--" + BOUNDARY + b"\r\n" + noise[:500],
        b"\r\n--" + BOUNDARY + b"X still data\r\n" + noise[:200],
        b"\n\r\r\n--" + BOUNDARY[:-1],
        b"",
        face_photos(1)[0],
    ]


def test_boundary_finder_answers_as_werkzeugs_patterns() -> None:
    """On random bytes full of line breaks, blanks, dashes and (partial) boundaries, from random
    positions: the same match (start, end, what follows the boundary) or none, for both patterns."""
    rng = random.Random(11)
    oracle = MultipartDecoder(BOUNDARY)
    pieces = [b"\r", b"\n", b"\r\n", b" ", b"\t", b"-", b"--", b"a", b"--" + BOUNDARY, BOUNDARY[:5], b"\x0b"]
    finders = [(oracle.preamble_re, _BoundaryFinder(BOUNDARY, line_break_required=False)),
               (oracle.boundary_re, _BoundaryFinder(BOUNDARY, line_break_required=True))]
    found = 0
    for _ in range(3000):
        data = bytearray(b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))))
        pos = rng.randint(0, len(data))
        for pattern, finder in finders:
            want, got = pattern.search(data, pos), finder.search(data, pos)
            assert (want is None) == (got is None), (data, pos)
            if want is not None and got is not None:
                found += 1
                assert (got.start(), got.end(), got.group(1)) == (want.start(), want.end(), want.group(1))
    assert found > 300  # the cases were not all misses


@pytest.mark.parametrize("preamble", [b"", b"a preamble\r\n", b"\r\n", b"no line break"])
@pytest.mark.parametrize("ending", [b"--" + BOUNDARY + b"--\r\n", b"--" + BOUNDARY + b"-- \t", b"--" + BOUNDARY + b"--",
                                    b"--" + BOUNDARY + b" \r\n"])
def test_preambles_blanks_and_endings_as_werkzeug(preamble: bytes, ending: bytes) -> None:
    parts = body([("file", b"abc"), ("other", b"\r\n--" + BOUNDARY[:-2])], epilogue=False)
    message = preamble + parts.replace(b"--" + BOUNDARY + b"\r\n", b"--" + BOUNDARY + b" \t\r\n", 1) + ending
    for chunks in ([len(message)], [1] * len(message), [5, 9, 2] * 20):
        assert decode(FastMultipartDecoder, message, chunks) == decode(MultipartDecoder, message, chunks)


@pytest.mark.parametrize("line_break", [b"\r\n", b"\n", b"\r"])
def test_same_parts_as_werkzeug_in_any_chunking(line_break: bytes) -> None:
    rng = random.Random(7)
    payloads = tricky_payloads(rng)
    message = body([(f"file{n}", p) for n, p in enumerate(payloads)], line_break)
    for trial in range(40):
        chunks = [rng.randint(1, 9000 if trial % 2 else 70) for _ in range(rng.randint(1, 400))]
        expected = decode(MultipartDecoder, message, chunks)
        assert decode(FastMultipartDecoder, message, chunks) == expected
    if line_break != b"\r\n":
        return  # with bare CR or LF, a payload that starts with a line break is ambiguous (werkzeug too)
    # and the parts are what was sent
    whole = decode(FastMultipartDecoder, message, [len(message)])
    parts = [bytes(whole[n + 1]) if isinstance(whole[n + 1], bytearray) else b""
             for n, event in enumerate(whole) if isinstance(event, tuple) and event[0] == "File"]
    assert parts == payloads
    assert whole[-1] == ("state", "COMPLETE")


@pytest.mark.parametrize("broken", [
    body([("file", b"abc")], epilogue=False),  # no closing boundary
    b"--" + BOUNDARY + b"\r\nno blank line after the headers",
    b"junk before any boundary",
    body([("file", b"abc")])[:-10],  # cut in the closing boundary
])
def test_same_errors_as_werkzeug(broken: bytes) -> None:
    for chunks in ([len(broken)], [3] * 40, [17, 1, 1, 5]):
        assert decode(FastMultipartDecoder, broken, chunks) == decode(MultipartDecoder, broken, chunks)


def test_the_app_parses_uploads_with_it() -> None:
    """create_app installs the decoder in werkzeug's form parser, and uploads still arrive whole."""
    app = create_app()
    assert formparser.MultipartDecoder is FastMultipartDecoder
    photos = face_photos(3)

    @app.post("/echo-sizes")
    def echo():  # type: ignore[no-untyped-def]
        from flask import request
        return {"sizes": [len(f.read()) for f in request.files.getlist("file")], "note": request.form["note"]}

    client = app.test_client()
    answer = client.post("/echo-sizes", data={"note": "a\r\nb", "file": [
        (io.BytesIO(p), f"{n}.jpg", "image/jpeg") for n, p in enumerate(photos)]})
    assert answer.get_json() == {"sizes": [len(p) for p in photos], "note": "a\r\nb"}



def test_install_keeps_werkzeugs_decoder_when_ours_does_not_fit(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A werkzeug whose decoder reads the self-check body differently keeps its own decoder (a warning
    says so) instead of failing uploads; this werkzeug gets the faster one."""
    from web import multipart

    monkeypatch.setattr(formparser, "MultipartDecoder", MultipartDecoder)
    monkeypatch.setattr(multipart._BoundaryFinder, "search", lambda self, data, pos=0: None)
    assert multipart.install() is False
    assert formparser.MultipartDecoder is MultipartDecoder
    assert "werkzeug's own decoder" in caplog.text
    monkeypatch.undo()
    monkeypatch.setattr(formparser, "MultipartDecoder", MultipartDecoder)
    assert multipart.install() is True and formparser.MultipartDecoder is FastMultipartDecoder
