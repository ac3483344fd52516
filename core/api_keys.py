"""API keys: ``ds_<id>_<secret>``; only sha256(secret) is stored, compared in constant time.

A key is long random data, so a fast hash is enough (no password stretching needed); the id part
finds the row without scanning.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from core.models import ApiKey, utcnow
from core.tokens import DEFAULT_SCOPES, SCOPES


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, subject: str, scopes: tuple[str, ...] = DEFAULT_SCOPES) -> str:
    """Store a new key and return it in full: the only time it is ever visible."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(sorted(unknown))}")
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    session.add(ApiKey(id=key_id, secret_hash=_hash(secret), subject=subject, scopes=" ".join(scopes)))
    return f"ds_{key_id}_{secret}"


def check_api_key(session: Session, presented: str) -> ApiKey | None:
    """The live key row for ``presented``, or None."""
    try:
        prefix, key_id, secret = presented.split("_", 2)
    except ValueError:
        return None
    if prefix != "ds":
        return None
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.secret_hash, _hash(secret)) else None


def revoke_api_key(session: Session, key_id: str) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
