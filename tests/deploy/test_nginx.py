"""nginx configs: `nginx -t` on both, then the template serving real traffic.

The live tests render nginx/nginx.conf.template into a temp folder, put a small Python HTTP
server behind it as the upstream, and run the real nginx binary unprivileged-style (every path
under the temp folder). They skip only when no nginx binary exists (CI installs the Debian one).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import socket
import string
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "nginx" / "nginx.conf.template"
PRODUCTION = ROOT / "nginx" / "deepscreen.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                       if os.access(p, os.X_OK)), None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="no nginx binary (apt-get install nginx); CI has it")
LIMIT = 51 * 1024 * 1024  # client_max_body_size 51m


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _render(prefix: Path, port: int, upstream: str) -> Path:
    text = string.Template(TEMPLATE.read_text()).substitute(
        LISTEN_PORT=port, UPSTREAM=upstream, PREFIX=str(prefix))
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def _nginx_args(prefix: Path, conf: Path) -> list[str]:
    return [NGINX, "-e", "stderr", "-p", str(prefix), "-c", str(conf)]


def _global_directives() -> str:
    # As root, nginx's workers default to `nobody`, which cannot enter a 0700 pytest temp folder
    # to spool request bodies; run them as the current user instead.
    return "daemon off; user root;" if os.geteuid() == 0 else "daemon off;"


def _check(args: list[str]) -> None:
    result = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# ---- static checks --------------------------------------------------------------------------------

def test_template_renders_every_placeholder(tmp_path: Path) -> None:
    text = _render(tmp_path, 8080, "127.0.0.1:8000").read_text()
    assert "${" not in text
    assert f"pid {tmp_path}/nginx.pid;" in text and "listen 127.0.0.1:8080" in text
    assert "server 127.0.0.1:8000;" in text and "/var/" not in text
    for directive in ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path",
                      "scgi_temp_path", "error_log", "access_log"):
        assert re.search(rf"{directive} {re.escape(str(tmp_path))}/", text), directive


@needs_nginx
def test_template_passes_nginx_t(tmp_path: Path) -> None:
    _check(_nginx_args(tmp_path, _render(tmp_path, _free_port(), "127.0.0.1:8000")))


@needs_nginx
def test_production_server_block_passes_nginx_t(tmp_path: Path) -> None:
    block = PRODUCTION.read_text()
    assert "server web:8000;" in block
    block = block.replace("server web:8000;", "server 127.0.0.1:8000;")
    block = block.replace("/var/log/nginx/access.log", str(tmp_path / "access.log"))
    (tmp_path / "deepscreen.conf").write_text(block)
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};" for kind in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
                    f"http {{\n{temp}\ninclude {tmp_path}/deepscreen.conf;\n}}\n")
    _check(_nginx_args(tmp_path, conf))


def _server_directives(text: str) -> set[str]:
    """The directives both files must share, normalised (the template escapes $ as $$)."""
    keep = ("client_", "add_header", "gzip", "proxy_", "error_page", "return", "location", "map ", "keepalive ",
            "server_tokens", "send_timeout", '"~^', "default ")
    lines = {re.sub(r"\s+", " ", ln.strip()).replace("$$", "$") for ln in text.splitlines()}
    return {ln for ln in lines if ln.startswith(keep) and "_temp_path" not in ln}


def test_template_and_production_config_agree() -> None:
    template = _server_directives(TEMPLATE.read_text())
    production = _server_directives(PRODUCTION.read_text())
    assert template == production, {"template only": template - production,
                                     "production only": production - template}
    assert "client_max_body_size 51m;" in production


# ---- live: nginx in front of a small upstream --------------------------------------------------

class _Upstream(BaseHTTPRequestHandler):
    """Echoes what reached it, so the tests see what nginx forwarded."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/ready":
            self._answer(503, {"error": {"code": "not_ready", "message": "from the app", "details": {}}})
        elif self.path == "/v1/big":
            self._answer(200, {"items": [{"id": i, "label": "real", "score": 0.5} for i in range(200)]})
        else:
            self._answer(200, {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})

    def do_POST(self) -> None:
        received = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(200, {"path": self.path, "bytes": len(received)})


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _start_nginx(prefix: Path, upstream: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    conf = _render(prefix, port, upstream)
    proc = subprocess.Popen([*_nginx_args(prefix, conf), "-g", _global_directives()],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited: {proc.stdout.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    _stop_nginx(proc)
    raise AssertionError("nginx did not start listening within 10 s")


def _stop_nginx(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM: fast shutdown
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def nginx(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if NGINX is None:
        pytest.skip("no nginx binary (apt-get install nginx); CI has it")
    proc, port = _start_nginx(tmp_path_factory.mktemp("nginx"), upstream)
    yield port
    _stop_nginx(proc)


def _request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             source: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _assert_error_shape(headers: dict[str, str], body: bytes, code: str) -> dict:
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]
    assert error["details"]["request_id"] == headers["x-request-id"]
    assert headers["x-content-type-options"] == "nosniff"
    return error


def test_proxies_with_forwarded_headers_and_security_headers(nginx: int) -> None:
    status, headers, body = _request(nginx, "GET", "/v1/models")
    assert status == 200
    seen = json.loads(body)["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "127.0.0.1" and seen["x-real-ip"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-request-id"])  # nginx's own id when none was sent
    assert headers["x-request-id"] == seen["x-request-id"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert "server" not in headers or "nginx/" not in headers["server"]  # server_tokens off


def test_request_id_passes_through_and_unsafe_ones_are_replaced(nginx: int) -> None:
    _, headers, body = _request(nginx, "GET", "/status/1", headers={"X-Request-ID": "client-id.42"})
    assert json.loads(body)["headers"]["x-request-id"] == "client-id.42" == headers["x-request-id"]
    _, headers, body = _request(nginx, "GET", "/status/1", headers={"X-Request-ID": 'bad"id'})
    assert re.fullmatch(r"[0-9a-f]{32}", json.loads(body)["headers"]["x-request-id"])


def test_upload_under_the_limit_reaches_the_app(nginx: int) -> None:
    payload = os.urandom(3 * 1024 * 1024)  # above client_body_buffer_size: spooled to the temp folder
    status, _, body = _request(nginx, "POST", "/v1/jobs", body=payload,
                               headers={"Content-Type": "application/octet-stream"})
    assert status == 200 and json.loads(body)["bytes"] == len(payload)


def test_body_over_the_limit_gets_a_json_413(nginx: int) -> None:
    # nginx answers from Content-Length alone, so the 51 MiB body never has to be sent.
    with socket.create_connection(("127.0.0.1", nginx), timeout=10) as sock:
        sock.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream"
                     f"\r\nContent-Length: {LIMIT + 1}\r\n\r\n".encode())
        sock.sendall(b"x" * 1024)
        raw = b""
        while b"}}" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].split()[1] == "413"
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    _assert_error_shape(headers, body.strip(), "payload_too_large")


def test_json_is_gzipped_for_clients_that_accept_it(nginx: int) -> None:
    status, headers, body = _request(nginx, "GET", "/v1/big", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert len(json.loads(gzip.decompress(body))["items"]) == 200
    _, plain_headers, plain = _request(nginx, "GET", "/v1/big")
    assert "content-encoding" not in plain_headers and len(body) < len(plain)


def test_metrics_only_from_allowed_addresses(nginx: int) -> None:
    status, _, body = _request(nginx, "GET", "/metrics")
    assert status == 200 and json.loads(body)["path"] == "/metrics"
    status, headers, body = _request(nginx, "GET", "/metrics", source="127.0.0.2")
    assert status == 403
    _assert_error_shape(headers, body, "forbidden")


def test_app_errors_pass_through_untouched(nginx: int) -> None:
    status, headers, body = _request(nginx, "GET", "/ready")
    assert status == 503 and json.loads(body)["error"]["code"] == "not_ready"
    assert headers["x-content-type-options"] == "nosniff"


def test_dead_upstream_gets_a_json_502(tmp_path: Path) -> None:
    if NGINX is None:
        pytest.skip("no nginx binary (apt-get install nginx); CI has it")
    proc, port = _start_nginx(tmp_path, f"127.0.0.1:{_free_port()}")  # nothing listens there
    try:
        status, headers, body = _request(port, "POST", "/v1/jobs", body=b"{}")
    finally:
        _stop_nginx(proc)
    assert status in (502, 503)
    _assert_error_shape(headers, body, "bad_gateway" if status == 502 else "unavailable")


def test_stub_status_for_the_exporter_only_from_allowed_addresses(nginx: int) -> None:
    status, _, body = _request(nginx, "GET", "/stub_status")
    assert status == 200 and body.startswith(b"Active connections:")
    assert b"server accepts handled requests" in body
    status, headers, body = _request(nginx, "GET", "/stub_status", source="127.0.0.2")
    assert status == 403
    _assert_error_shape(headers, body, "forbidden")


def test_production_stub_status_has_its_own_private_server() -> None:
    """In production stub_status sits on port 8081 (never published by docker-compose), private only."""
    text = PRODUCTION.read_text()
    servers = re.split(r"^server \{", text, flags=re.M)[1:]
    status_servers = [s for s in servers if "stub_status;" in s]
    assert len(status_servers) == 1
    block = status_servers[0]
    assert re.search(r"^\s*listen 8081;", block, re.M) and "deny all;" in block
    assert "allow 0.0.0.0" not in block and "allow all" not in block
    main = next(s for s in servers if "listen 80 default_server;" in s)
    assert "stub_status;" not in main


def test_request_line_or_header_too_long_for_nginx_gets_json(nginx: int) -> None:
    """nginx refuses an over-long request line (414) or header (its 494, answered 431) before any
    proxying: in the API's error shape, like every other answer."""
    status, headers, body = _request(nginx, "GET", "/v1/jobs?limit=" + "9" * 20_000)
    assert status == 414
    _assert_error_shape(headers, body.strip(), "uri_too_long")
    status, headers, body = _request(nginx, "GET", "/v1/jobs", headers={"X-Filler": "y" * 20_000})
    assert status == 431
    _assert_error_shape(headers, body.strip(), "headers_too_large")
