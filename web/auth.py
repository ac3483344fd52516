"""Authentication: Bearer JWT on every API route; API keys are traded for short-lived JWTs.

A token traded for a key names the key (``key_id``): each request checks that the key still stands
(core.api_keys.live_key, cached a few seconds) and counts against the key's own rate limit, if it has
one, on top of the per-subject limits. That is what makes a personal extension key safe to hand out:
revoke it and its tokens stop working; give it 60/minute and its holder cannot exceed that.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from limits import parse

from core.api_keys import KeyState, check_api_key, key_state, live_key
from core.db import session_scope
from core.settings import Settings
from core.tokens import Principal, TokenError, issue_token, verify_token
from web.errors import ApiError, error_response
from web.extensions import limiter

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, url_prefix="/v1/auth")


def settings() -> Settings:
    return current_app.extensions["deepscreen.settings"]


def load_principal() -> Response | None:
    """before_request: remember who is calling (before the rate limiter keys on it); enforce later.

    A token minted from an API key is only as good as the key: revoked or expired → treated as no
    token (401 where one is needed); over the key's own rate limit → 429 here, before any work."""
    g.principal = None
    g.auth_error = None
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        g.auth_error = "the Authorization header must be 'Bearer <token>'"
        return None
    try:
        principal = verify_token(settings(), token.strip())
    except TokenError as exc:
        g.auth_error = f"invalid token: {exc}"
        return None
    if principal.key_id is not None:
        key = live_key(principal.key_id)
        if key is None or key.subject != principal.subject:
            g.auth_error = "the API key this token was issued for is revoked or expired"
            return None
        if key.rate_limit:
            refused = _over_key_limit(key)
            if refused is not None:
                return refused
    g.principal = principal
    return None


def _over_key_limit(key: KeyState) -> Response | None:
    """Count this request against the key's own limit (in the limiter's storage, so it holds across
    processes); a 429 in the error shape with Retry-After once it is spent."""
    try:
        item = parse(key.rate_limit or "")
        strategy = limiter.limiter
        if strategy.hit(item, "apikey", key.id):
            return None
        reset = strategy.get_window_stats(item, "apikey", key.id).reset_time
    except Exception as exc:  # storage down: like RATELIMIT_SWALLOW_ERRORS, never a 500 for a limit
        log.warning("per-key rate limit not checked: %s", exc)
        return None
    response = error_response(429, "rate_limited", f"rate limit of this API key exceeded: {key.rate_limit}",
                              {"limit": key.rate_limit, "scope": "api_key"})
    response.headers["Retry-After"] = str(max(1, math.ceil(reset - time.time())))
    return response


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
            raise ApiError(401, "unauthorized", "unknown, revoked or expired API key")
        key = key_state(row)
    cfg = settings()
    # The token names its key (revocation and the key's rate limit apply to it) and ends no later than the key.
    not_after = int(key.expires_at.timestamp()) if key.expires_at else None
    lifetime = cfg.jwt_ttl_seconds
    if not_after is not None:
        lifetime = max(1, min(lifetime, not_after - int(time.time())))
    return jsonify({"access_token": issue_token(cfg, key.subject, key.scopes, key_id=key.id, not_after=not_after),
                    "token_type": "Bearer", "expires_in": lifetime, "scope": " ".join(key.scopes)})
