"""A tiny real HTTP server that answers from a script, for the client's HTTP policies (retries on
429/503 with Retry-After, connection errors, token re-trades, ?wait= and polling) that a healthy
deepscreen never shows on demand. Every request is recorded: method, path, query, headers, body."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Seen], Reply]


class ScriptedServer:
    """``routes`` maps "METHOD /path" to a list of replies (served in order, the last one repeats)
    or to a function of the request."""

    def __init__(self, routes: dict[str, list[Reply] | Route]) -> None:
        self.routes = routes
        self.seen: list[Seen] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()),
                            self.rfile.read(length) if length else b"")
                reply = outer.reply(seen)
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reply(self, seen: Seen) -> Reply:
        key = f"{seen.method} {seen.path}"
        with self._lock:
            self.seen.append(seen)
            route = self.routes.get(key)
            if route is None:
                return Reply(404, {"error": {"code": "not_found", "message": key, "details": {}}})
            if callable(route):
                return route(seen)
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
            return route[min(n, len(route) - 1)]

    def calls(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]


@contextmanager
def scripted(routes: dict[str, list[Reply] | Route]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(routes)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def job(job_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "status": status, "attempts": 1, "models": ["nsfw"], "media": None,
            "results": {}, "error": None, "status_url": f"/status/{job_id}", **extra}


def error(code: str, message: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "message": message or code, "details": {}}}
