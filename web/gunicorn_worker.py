"""The gunicorn worker `deepscreen web` runs: gthread, with gunicorn's own error answers in the API's
error shape.

gunicorn answers some requests before the app sees them (a request line over 4094 bytes: 414; too
many or too large headers: 431; a malformed request line: 400) with an HTML page. Clients of a JSON
API should get ``{"error": {"code", "message"}}`` there too; gunicorn has no setting for it, so the
worker process swaps gunicorn's one error writer for ours when it starts (after the fork, in the
worker process only).
"""

from __future__ import annotations

import json
import socket

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

CODES = {400: "bad_request", 403: "forbidden", 414: "uri_too_long", 417: "expectation_failed",
         431: "headers_too_large", 500: "internal_error", 501: "not_implemented"}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's contract (a whole response, then the connection closes), as JSON."""
    message = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"error": {"code": CODES.get(status_int, "bad_request"), "message": message,
                                 "details": {}}}).encode() + b"\n"
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


class JsonErrorThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        util.write_error = write_json_error  # type: ignore[assignment]
        super().init_process()
