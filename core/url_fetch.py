"""Fetching a URL a client names (``POST /v1/jobs`` with ``url``) without letting it reach inside
our network: the SSRF guard.

What an attacker tries, and what stops it here:

- an internal address written into the URL (``http://10.0.0.5/``, ``http://[::ffff:127.0.0.1]/``,
  ``http://2130706433/``): every address a name resolves to is checked, literal or not, IPv4 and
  IPv6, with the IPv4 inside IPv4-mapped, NAT64 and 6to4 IPv6 addresses checked as IPv4;
- a public name whose DNS answers 127.0.0.1, or answers differently the second time (rebinding):
  the name is resolved ONCE, every answer must pass, and the connection goes to the checked address
  (the Host header and TLS SNI/certificate still name the host), so there is no second lookup;
- a public URL that redirects inside: redirects are followed by hand (at most 3), each target
  parsed, resolved and checked like the first;
- a huge or endless body, or a server that drips bytes: the size limit is enforced while reading,
  each connect/read has a timeout, and a watchdog closes the socket at the overall deadline.

Cloud metadata addresses are refused even for hosts in the allow-list (``URL_FETCH_ALLOWED_HOSTS``,
which otherwise lets operators and tests reach named loopback/private hosts).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

MAX_URL_LENGTH = 2000
MAX_REDIRECTS = 3
REDIRECTS = {301, 302, 303, 307, 308}
CHUNK = 64 * 1024
USER_AGENT = "deepscreen-fetch/1"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS/GCP/Azure/OpenStack, ECS task metadata, Alibaba, AWS over IPv6).
METADATA_ADDRESSES = {ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")}
METADATA_NAMES = {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                  "instance-data.ec2.internal"}
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Content types a server may send for media; anything else (text/html, JSON, …) is refused before
# the body is read. The bytes are judged afterwards exactly as an upload's are.
MEDIA_TYPES = ("image/", "video/")
NEUTRAL_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/mp4"}


class UrlRejected(Exception):
    """The URL is malformed, not allowed, or could not be fetched within the limits."""

    def __init__(self, code: str, message: str, status: int = 422, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.details = code, message, status, details or {}


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower-case, IDNA-encoded; an IPv6 literal without brackets
    port: int
    path: str  # path and query, never empty


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str
    url: str  # after redirects
    address: str  # the address the bytes came from


def parse_url(url: str, what: str = "url") -> Target:
    """An http(s) URL with a host, no credentials, a sane port; raises UrlRejected(bad_url)."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise UrlRejected("bad_url", f"{what} is longer than {MAX_URL_LENGTH} characters")
    if any(c in url for c in "\x00\r\n\t "):
        raise UrlRejected("bad_url", f"{what} must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname or ""
    except ValueError as exc:
        raise UrlRejected("bad_url", f"{what} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not host or parts.username is not None or parts.password:
        raise UrlRejected("bad_url", f"{what} must be an http(s) URL with a host and no credentials")
    try:
        host = host.encode("idna").decode("ascii").lower() if not _is_ip(host) else host.lower()
    except UnicodeError as exc:
        raise UrlRejected("bad_url", f"{what} has a host name that is not valid") from exc
    if port == 0:
        raise UrlRejected("bad_url", f"{what} has port 0")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host.rstrip("."), port or (443 if parts.scheme == "https" else 80), path)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4, IPv4-compatible), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or int(address) >> 32 == 0:  # 64:ff9b::a.b.c.d, ::a.b.c.d (deprecated)
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_metadata(address: IPAddress) -> bool:
    return address in METADATA_ADDRESSES or embedded_ipv4(address) in METADATA_ADDRESSES


def address_problem(address: IPAddress) -> str | None:
    """Why this server must not connect to ``address`` for a client, or None when it is public."""
    if is_metadata(address):
        return "a cloud metadata address"
    inner = embedded_ipv4(address)
    if inner is not None:
        problem = address_problem(inner)
        if problem:
            return f"{problem} (inside {address})"
    checks = [("loopback", address.is_loopback), ("link-local", address.is_link_local),
              ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
              ("reserved", address.is_reserved), ("private", address.is_private),
              ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
              ("not globally routable", not address.is_global)]
    for name, hit in checks:
        if hit:
            return f"a {name} address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (tests replace this to play DNS tricks)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # getaddrinfo returns IPv6 addresses with a scope ("fe80::1%eth0"); the scope is not part of the check.
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def check_target(target: Target, allowed_hosts: set[str]) -> IPAddress:
    """Resolve once, check every answer, and return the one address to connect to."""
    exempt = target.host in allowed_hosts
    if target.host in METADATA_NAMES or (target.host.endswith(".internal") and not exempt):
        raise UrlRejected("url_not_allowed", f"the host {target.host!r} is not one this server fetches from")
    try:
        addresses = resolve(target.host, target.port)
    except (OSError, UnicodeError, ValueError) as exc:
        raise UrlRejected("url_fetch_failed", f"the host {target.host!r} could not be resolved") from exc
    if not addresses:
        raise UrlRejected("url_fetch_failed", f"the host {target.host!r} has no address")
    for address in addresses:
        problem = address_problem(address)
        # Metadata stays refused even for an allowed host: nothing a client names should reach it.
        if problem and (not exempt or is_metadata(address)):
            # Every answer must pass: a name with one public and one internal record is refused, since
            # the attacker chooses which one a later lookup would return.
            raise UrlRejected("url_not_allowed", f"{target.host!r} resolves to {problem}",
                              details={"host": target.host})
    return addresses[0]


def open_socket(address: IPAddress, port: int, timeout: float) -> socket.socket:
    """The one place a fetch connects: to the checked address, never to a name (tests watch it)."""
    return socket.create_connection((str(address), port), timeout)


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to an already-checked address; the Host header still names the host."""

    def __init__(self, target: Target, address: IPAddress, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = address
        self.raw: socket.socket | None = None  # kept: http.client drops .sock once a response owns it

    def connect(self) -> None:
        self.sock = self.raw = open_socket(self.address, self.port, self.timeout)  # type: ignore[arg-type]
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an already-checked address; SNI and the certificate check use the host name."""

    def __init__(self, target: Target, address: IPAddress, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.address = address
        self.raw: socket.socket | None = None

    def connect(self) -> None:
        raw = open_socket(self.address, self.port, self.timeout)  # type: ignore[arg-type]
        self.sock = self.raw = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def _content_type(response: http.client.HTTPResponse) -> str:
    return (response.getheader("Content-Type") or "").split(";")[0].strip().lower()


def fetch(url: str, *, max_bytes: int, allowed_hosts: set[str] | None = None, timeout: float = 5.0,
          deadline_seconds: float = 20.0, clock: Callable[[], float] = time.monotonic) -> Fetched:
    """GET ``url`` under the guard; returns its bytes (at most ``max_bytes``) or raises UrlRejected."""
    allowed = allowed_hosts or set()
    deadline = clock() + deadline_seconds
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = parse_url(current)
        address = check_target(target, allowed)
        outcome = _get(target, address, max_bytes, timeout, deadline, clock)
        if isinstance(outcome, Fetched):
            return Fetched(outcome.data, outcome.content_type, current, outcome.address)
        current = urljoin(current, outcome)
    raise UrlRejected("url_fetch_failed", f"more than {MAX_REDIRECTS} redirects")


@contextlib.contextmanager
def _pinned(target: Target, address: IPAddress, timeout: float, seconds: float,
            what: str) -> Iterator[tuple[_PinnedHTTP | _PinnedHTTPS, threading.Event]]:
    """A connection to the checked ``address`` with a watchdog that shuts its socket after ``seconds``
    (per-read timeouts alone let a server that drips a byte every few seconds hold a request forever);
    the event says it fired. Transport errors become ``url_fetch_failed`` naming ``what`` failed."""
    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = kind(target, address, timeout)
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        if conn.raw is not None:
            with contextlib.suppress(OSError):
                conn.raw.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(seconds, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield conn, expired
    except UrlRejected:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = f"the {what} took too long" if expired.is_set() or isinstance(exc, TimeoutError) else (
            f"the {what} failed: {type(exc).__name__}")
        raise UrlRejected("url_fetch_failed", reason) from exc
    finally:
        watchdog.cancel()
        conn.close()


def post(url: str, body: bytes, headers: dict[str, str], *, allowed_hosts: set[str] | None = None,
         timeout: float = 10.0) -> int:
    """POST ``body`` to ``url`` under the guard ``fetch`` uses (one lookup, every answer checked, the
    connection made to the checked address) and return the HTTP status; redirects are not followed.

    For webhooks: a callback host that resolved to a public address when the job was submitted may
    resolve inside the network when the job finishes (DNS rebinding), so the check is made here, at
    the moment of the request. Raises UrlRejected: ``url_not_allowed`` when the guard refuses the
    address, ``url_fetch_failed`` when the name does not resolve or the request fails or takes longer
    than ``timeout`` in all."""
    target = parse_url(url)
    address = check_target(target, allowed_hosts or set())
    with _pinned(target, address, timeout, timeout, "request") as (conn, _expired):
        conn.request("POST", target.path, body=body, headers={**headers, "Connection": "close"})
        return conn.getresponse().status


def _get(target: Target, address: IPAddress, max_bytes: int, timeout: float, deadline: float,
         clock: Callable[[], float]) -> Fetched | str:
    """One request: the body, or the Location of a redirect."""
    remaining = deadline - clock()
    if remaining <= 0:
        raise UrlRejected("url_fetch_failed", "the fetch took too long")
    with _pinned(target, address, min(timeout, remaining), remaining, "fetch") as (conn, expired):
        conn.request("GET", target.path, headers={
            "User-Agent": USER_AGENT, "Accept": "image/*, video/*;q=0.9, */*;q=0.1",
            "Accept-Encoding": "identity", "Connection": "close"})
        response = conn.getresponse()
        if response.status in REDIRECTS:
            location = response.getheader("Location")
            if not location:
                raise UrlRejected("url_fetch_failed", f"a {response.status} redirect without a Location")
            return location
        if response.status != 200:
            raise UrlRejected("url_fetch_failed", f"the server answered HTTP {response.status}",
                              details={"http_status": response.status})
        content_type = _content_type(response)
        if content_type and not content_type.startswith(MEDIA_TYPES) and content_type not in NEUTRAL_TYPES:
            raise UrlRejected("unsupported_media_type", f"the URL serves {content_type}, not an image or video",
                              status=415, details={"content_type": content_type})
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise UrlRejected("url_too_large", f"the URL's content exceeds {max_bytes} bytes",
                              details={"max_bytes": max_bytes})
        body = bytearray()
        while True:
            left = deadline - clock()
            if left <= 0:
                raise UrlRejected("url_fetch_failed", "the fetch took too long")
            if conn.raw is not None:
                conn.raw.settimeout(min(timeout, left))
            # read1: what has arrived (one socket read), so the deadline is looked at between reads;
            # read(n) would block until n bytes came, however slowly.
            chunk = response.read1(min(CHUNK, max_bytes + 1 - len(body)))
            if not chunk:
                if expired.is_set():  # the watchdog shut the socket: an end, but not the body's
                    raise UrlRejected("url_fetch_failed", "the fetch took too long")
                break
            body += chunk
            if len(body) > max_bytes:
                raise UrlRejected("url_too_large", f"the URL's content exceeds {max_bytes} bytes",
                                  details={"max_bytes": max_bytes})
        return Fetched(bytes(body), content_type, "", str(address))
