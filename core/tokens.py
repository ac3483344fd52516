"""JWT issue and verification (pyjwt), with the algorithm pinned and every standard claim required.

Keys rotate through ``JWT_KEYS`` (kid → secret): new tokens are signed with ``JWT_ACTIVE_KID`` and any
listed key verifies, so the old key keeps working until it is removed from the list.

A token traded for an API key carries the key's id (claim ``key_id``), so the web can apply that
key's own rate limit and refuse the token the moment the key is revoked (web.auth), and it never
outlives the key's expiry.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

from core.settings import Settings

SCOPES = ("submit", "read", "admin")
DEFAULT_SCOPES = ("submit", "read")
REQUIRED_CLAIMS = ["exp", "iat", "aud", "iss", "sub"]


class TokenError(ValueError):
    """The token is missing, malformed, expired or signed with a key we do not accept."""


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    key_id: str | None = None  # the API key the token was traded for, if any

    def has(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def issue_token(settings: Settings, subject: str, scopes: tuple[str, ...] = DEFAULT_SCOPES,
                ttl_seconds: int | None = None, key_id: str | None = None, not_after: int | None = None) -> str:
    """A signed JWT; ``key_id`` ties it to an API key, ``not_after`` (unix time) caps its ``exp``."""
    keys = settings.signing_keys
    if not keys:
        raise TokenError("no signing key: set JWT_SECRET (or run `deepscreen up`, which creates one)")
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise TokenError(f"unknown scopes: {', '.join(sorted(unknown))}")
    kid = settings.jwt_active_kid if settings.jwt_keys else ""
    now = int(time.time())
    expires = now + (ttl_seconds or settings.jwt_ttl_seconds)
    claims: dict[str, object] = {
        "sub": subject, "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "iat": now, "nbf": now,
        "exp": expires if not_after is None else min(expires, not_after), "scope": " ".join(scopes),
        "jti": secrets.token_hex(8),
    }
    if key_id is not None:
        claims["key_id"] = key_id
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, keys[kid], algorithm=settings.jwt_algorithm, headers=headers)


# Tokens already verified: token -> (principal, exp, what verified it). A client sends the same token
# on every request, and a signature check plus claim validation costs ~0.3 ms of CPU each time
# (profiled); a hit is re-checked against the clock and the current keys, so it accepts exactly what
# a full verification would. Bounded; cleared when full.
_VERIFIED: dict[str, tuple[Principal, float, tuple[object, ...]]] = {}
_VERIFIED_MAX = 10_000


def verify_token(settings: Settings, token: str) -> Principal:
    keys = settings.signing_keys
    if not keys:
        raise TokenError("server has no signing key configured")
    context = (tuple(sorted(keys.items())), settings.jwt_algorithm, settings.jwt_audience, settings.jwt_issuer)
    hit = _VERIFIED.get(token)
    if hit is not None and hit[2] == context and time.time() < hit[1] + settings.jwt_leeway_seconds:
        return hit[0]
    principal, expires = _verify(settings, keys, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[token] = (principal, expires, context)
    return principal


def _verify(settings: Settings, keys: dict[str, str], token: str) -> tuple[Principal, float]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError(f"malformed token: {exc}") from exc
    kid = header.get("kid", "")
    if kid not in keys:
        raise TokenError("token signed with an unknown key")
    try:
        claims = jwt.decode(
            token, keys[kid], algorithms=[settings.jwt_algorithm], audience=settings.jwt_audience,
            issuer=settings.jwt_issuer, leeway=settings.jwt_leeway_seconds,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise TokenError("token has an empty subject")
    scopes = frozenset(str(claims.get("scope", "")).split()) & frozenset(SCOPES)
    key_id = claims.get("key_id")
    if key_id is not None and (not isinstance(key_id, str) or not key_id):
        raise TokenError("token has a malformed key_id")
    return Principal(subject=subject, scopes=scopes, key_id=key_id), float(claims["exp"])
