"""HTTP with the policies every call needs: auth (a token, or an API key traded for short-lived JWTs
and re-traded before they expire), and retries with backoff on 429/502/503/504 and on connection
errors, honouring ``Retry-After``.

Retrying a POST is safe here because the client sends an ``Idempotency-Key`` with every submission:
a second delivery of the same upload answers with the first job, never a twin.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from deepscreen.client.errors import ApiError, AuthError, TransportError, api_error
from deepscreen.client.types import Token

RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "deepscreen-client/0.1"


def retry_after(response: requests.Response, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError, IndexError):
        return None


class Transport:
    """One ``requests.Session`` shared by every thread of a client, plus its credentials."""

    def __init__(self, base_url: str, *, token: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                 max_retry_after: float = 120.0, pool_size: int = 16, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the server URL must start with http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout, self.max_retries = timeout, max_retries
        self.backoff, self.max_backoff, self.max_retry_after = backoff, max_backoff, max_retry_after
        self.sleep = sleep
        self.session = session or requests.Session()
        if session is None:
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        if session is None:
            self.session.headers["User-Agent"] = USER_AGENT
        self._api_key = api_key
        self._token = token
        self._token_expires = float("inf") if token else 0.0  # a given token: we cannot know; the server says
        self._lock = threading.Lock()

    # ---- credentials -------------------------------------------------------------------------------

    def exchange(self) -> Token:
        """Trade the API key for a JWT (``POST /v1/auth/token``) and keep it until shortly before it expires."""
        if not self._api_key:
            raise AuthError(401, "unauthorized", "no API key to trade for a token")
        response = self.request("POST", "/v1/auth/token", headers={"X-API-Key": self._api_key}, auth=False)
        body = response.json()
        token = Token(access_token=str(body["access_token"]), expires_in=int(body.get("expires_in") or 0),
                      scope=str(body.get("scope") or ""))
        # Re-trade a little early: a request must not leave with a token that expires on the way.
        margin = min(60.0, max(1.0, token.expires_in * 0.1))
        self._token = token.access_token
        lifetime = max(0.0, token.expires_in - margin) if token.expires_in else float("inf")
        self._token_expires = time.monotonic() + lifetime
        return token

    def _bearer(self, force: bool = False) -> str | None:
        if self._api_key is None:
            return self._token
        with self._lock:
            if force or self._token is None or time.monotonic() >= self._token_expires:
                self.exchange()
            return self._token

    # ---- requests ----------------------------------------------------------------------------------

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        hinted = retry_after(response) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_retry_after)
        # Exponential backoff with jitter, so many clients turned away together do not return together.
        ceiling = min(self.max_backoff, self.backoff * (2 ** attempt))
        return random.uniform(ceiling / 2, ceiling)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                data: dict[str, Any] | list[tuple[str, Any]] | None = None, files: list[tuple[str, Any]] | None = None,
                json: Any = None, headers: dict[str, str] | None = None, timeout: float | None = None,
                auth: bool = True, ok: tuple[int, ...] = ()) -> requests.Response:
        """Send one API call with retries; return the 2xx response (or one whose status is in ``ok``).

        ``files`` are ``(field, (name, fileobj_or_bytes, content_type))``; file objects are rewound
        before every retry so a retried upload sends the whole file again.
        """
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        starts = [(f[1][1], f[1][1].tell()) for f in files or [] if hasattr(f[1][1], "seek")]
        refreshed = False
        attempt = 0
        while True:
            for fileobj, position in starts:
                fileobj.seek(position)
            sent_headers = dict(headers or {})
            if auth:
                bearer = self._bearer()
                if bearer:
                    sent_headers["Authorization"] = f"Bearer {bearer}"
            try:
                response = self.session.request(method, url, params=params, data=data, files=files, json=json,
                                                headers=sent_headers, timeout=timeout or self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= self.max_retries:
                    raise TransportError(f"{method} {url}: {exc}") from exc
                self.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code < 400 or response.status_code in ok:
                return response
            if response.status_code == 401 and auth and self._api_key and not refreshed:
                refreshed = True  # the token expired early or was rotated: trade the key once more
                self._bearer(force=True)
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                self.sleep(self._delay(attempt, response))
                attempt += 1
                continue
            raise self._error(response)

    @staticmethod
    def _error(response: requests.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        return api_error(response.status_code, body, response.text, retry_after(response))

    def close(self) -> None:
        self.session.close()
