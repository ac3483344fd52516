"""What the client raises: the API's one error shape as an exception, plus transport failures."""

from __future__ import annotations

from typing import Any


class DeepscreenError(Exception):
    """Base class: anything the client cannot turn into a result."""


class ApiError(DeepscreenError):
    """The server answered with ``{"error": {"code", "message", "details"}}`` (or a bare HTTP error)."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.details = details or {}
        self.retry_after = retry_after


class AuthError(ApiError):
    """401/403: a missing, expired or revoked credential, or a scope the credential lacks."""


class NotFound(ApiError):
    """404: an unknown id, or another tenant's (the API reports both the same way)."""


class RateLimited(ApiError):
    """429 after every retry was spent; ``retry_after`` says when the server will take more."""


class Unavailable(ApiError):
    """503 (or 502/504) after every retry was spent."""


class FeatureUnavailable(DeepscreenError):
    """The server does not offer this (yet): URL submission, batches, …"""


class TransportError(DeepscreenError):
    """No HTTP answer at all (connection refused, reset, timed out) after every retry was spent."""


class WaitTimeout(DeepscreenError):
    """``wait()`` gave up before the job ended; ``job`` is the last state seen."""

    def __init__(self, message: str, job: Any) -> None:
        super().__init__(message)
        self.job = job


def api_error(status: int, body: Any, text: str, retry_after: float | None) -> ApiError:
    """The exception for an HTTP error answer, typed by status."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "http_error")
        message = str(error.get("message") or "")
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
    else:
        code, message, details = "http_error", text[:300], {}
    cls: type[ApiError] = ApiError
    if status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFound
    elif status == 429:
        cls = RateLimited
    elif status in (502, 503, 504):
        cls = Unavailable
    return cls(status, code, message, details, retry_after)
