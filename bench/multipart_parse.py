"""The web's multipart parsing alone: werkzeug's decoder against web.multipart's, side by side, on the
bodies the benchmarks send (a POST /v1/batches of 16 distinct 512 px photos, a POST /v1/jobs of one).

    .venv/bin/python bench/multipart_parse.py [--rounds 200] [--items 1,16]

Each round parses the same body with each decoder in turn, through werkzeug's own form parser (the
road a Flask request takes; the body read from memory, so no socket time is in the figures), checks
that both gave the same files, and counts this process's CPU time per request.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug import formparser
from werkzeug.sansio.multipart import MultipartDecoder
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bench.common import Shared, header, int_list, own_cpu_seconds, table
from bench.photos import face_photos
from web.multipart import FastMultipartDecoder

DECODERS = {"werkzeug": MultipartDecoder, "web.multipart": FastMultipartDecoder}


def body(photos: list[bytes]) -> tuple[dict[str, object], bytes]:
    """A WSGI environ and the multipart body a client sends for these photos."""
    files = [(io.BytesIO(p), f"{n}.jpg", "image/jpeg") for n, p in enumerate(photos)]
    environ = EnvironBuilder(method="POST", data={"file": files}).get_environ()
    return environ, environ["wsgi.input"].read()


def parse(environ: dict[str, object], data: bytes, decoder: type[MultipartDecoder]) -> list[bytes]:
    formparser.MultipartDecoder = decoder  # type: ignore[misc]  # what werkzeug's parser looks up
    request = Request({**environ, "wsgi.input": io.BytesIO(data)})
    return [f.read() for f in request.files.getlist("file")]


def measure(photos: list[bytes], rounds: int) -> dict[str, float]:
    environ, data = body(photos)
    spent = dict.fromkeys(DECODERS, 0.0)
    for _ in range(rounds):
        parts = {}
        for name, decoder in DECODERS.items():
            started = time.process_time()
            parts[name] = parse(environ, data, decoder)
            spent[name] += time.process_time() - started
        if parts["werkzeug"] != parts["web.multipart"] or parts["werkzeug"] != photos:
            raise AssertionError("the decoders disagree")
    return {name: seconds / rounds * 1000 for name, seconds in spent.items()} | {"kib": len(data) / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--items", default="1,16", help="photos per request")
    args = parser.parse_args(argv)
    original = formparser.MultipartDecoder
    shared = Shared().start()
    rows = []
    try:
        for items in int_list(args.items):
            ms = measure(face_photos(items, seed=items), args.rounds)
            rows.append([items, round(ms["kib"]), ms["werkzeug"], ms["web.multipart"],
                         ms["werkzeug"] / ms["web.multipart"], ms["werkzeug"] / items, ms["web.multipart"] / items])
    finally:
        formparser.MultipartDecoder = original  # type: ignore[misc]
    shared.stop(own_cpu_seconds())
    print(header(f"multipart parsing, CPU per request, {args.rounds} rounds (the same body, each decoder in turn)",
                 shared))
    print(table(["photos", "body KiB", "werkzeug ms", "web.multipart ms", "ratio", "werkzeug ms/photo",
                 "web.multipart ms/photo"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
