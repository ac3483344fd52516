"""Authentication: Bearer JWT on every API route; API keys are traded for short-lived JWTs."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from core.api_keys import check_api_key
from core.db import session_scope
from core.settings import Settings
from core.tokens import Principal, TokenError, issue_token, verify_token
from web.errors import ApiError
from web.extensions import limiter

bp = Blueprint("auth", __name__, url_prefix="/v1/auth")


def settings() -> Settings:
    return current_app.extensions["deepscreen.settings"]


def load_principal() -> None:
    """before_request: remember who is calling (before the rate limiter keys on it); enforce later."""
    g.principal = None
    g.auth_error = None
    header = request.headers.get("Authorization", "")
    if not header:
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        g.auth_error = "the Authorization header must be 'Bearer <token>'"
        return
    try:
        g.principal = verify_token(settings(), token.strip())
    except TokenError as exc:
        g.auth_error = f"invalid token: {exc}"


def current_principal() -> Principal:
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise ApiError(401, "unauthorized", g.get("auth_error") or "a Bearer token is required")
    return principal


def require(scope: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_principal().has(scope):
                raise ApiError(403, "forbidden", f"this token lacks the '{scope}' scope")
            return view(*args, **kwargs)

        return wrapped

    return decorator


def _auth_limit() -> str:
    return settings().rate_limit_auth


@bp.post("/token")
@limiter.limit(_auth_limit, key_func=lambda: f"auth-ip:{request.remote_addr}")
def token():  # type: ignore[no-untyped-def]
    """Trade an API key (``X-API-Key`` header or JSON ``{"api_key"}``) for a short-lived JWT."""
    body = request.get_json(silent=True) or {}
    presented = request.headers.get("X-API-Key") or (body.get("api_key") if isinstance(body, dict) else None)
    if not isinstance(presented, str) or not presented:
        raise ApiError(401, "unauthorized", "an API key is required (X-API-Key header)")
    with session_scope() as session:
        row = check_api_key(session, presented) if "\x00" not in presented else None  # NUL: a DB error
        if row is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        subject, scopes = row.subject, tuple(row.scopes.split())
    cfg = settings()
    return jsonify({"access_token": issue_token(cfg, subject, scopes), "token_type": "Bearer",
                    "expires_in": cfg.jwt_ttl_seconds, "scope": " ".join(scopes)})
