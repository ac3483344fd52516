"""A loopback HTTP server the URL-submission tests point the server at: real sockets, and a record of
every request it received (path, Host header), so a test can show a refused URL was never fetched."""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    path: str
    host: str


@dataclass
class MediaServer:
    routes: dict[str, bytes] = field(default_factory=dict)  # path -> body (served as image/png unless typed)
    types: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]


def start(server: MediaServer) -> http.server.ThreadingHTTPServer:
    """Serve ``server``'s routes plus a few behaviours:

    - ``/redirect?to=URL[&status=302]`` answers a redirect to URL;
    - ``/stream?bytes=N`` sends N bytes of a PNG-looking body without Content-Length;
    - ``/declared?bytes=N`` declares Content-Length N and sends nothing more than the headers;
    - ``/drip`` sends headers, then one byte every 0.3 s, forever;
    - ``/silent`` accepts and never answers.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            server.seen.append(Seen(parts.path, self.headers.get("Host", "")))
            if parts.path == "/redirect":
                self.send_response(int(query.get("status", "302")))
                self.send_header("Location", query["to"])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif parts.path == "/stream":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Connection", "close")
                self.end_headers()
                chunk = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8184
                sent, total = 0, int(query["bytes"])
                try:
                    while sent < total:
                        self.wfile.write(chunk[: total - sent])
                        sent += len(chunk)
                except OSError:
                    pass  # the client stopped reading: what the size limit should do
                self.close_connection = True
            elif parts.path == "/declared":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", query["bytes"])
                self.end_headers()
                self.close_connection = True
            elif parts.path == "/drip":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(b"\x89PNG\r\n\x1a\n")
                    for _ in range(200):
                        time.sleep(0.3)
                        self.wfile.write(b"\x00")
                        self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True
            elif parts.path == "/silent":
                time.sleep(30)
                self.close_connection = True
            elif parts.path in server.routes:
                body = server.routes[parts.path]
                self.send_response(200)
                self.send_header("Content-Type", server.types.get(parts.path, "image/png"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server.port = httpd.server_port
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd
