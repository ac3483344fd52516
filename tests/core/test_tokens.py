"""JWT rules: pinned algorithm, required claims, scopes, key rotation by kid."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from core.settings import load_settings
from core.tokens import TokenError, issue_token, verify_token

SECRET = "s" * 40


def settings(**kw):  # type: ignore[no-untyped-def]
    return load_settings(jwt_secret=SECRET, **kw)


def claims(**overrides):  # type: ignore[no-untyped-def]
    now = int(time.time())
    base = {"sub": "alice", "iss": "deepscreen", "aud": "deepscreen-api", "iat": now, "exp": now + 60,
            "scope": "submit read"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_round_trip_keeps_subject_and_scopes() -> None:
    principal = verify_token(settings(), issue_token(settings(), "alice", ("read",)))
    assert principal.subject == "alice"
    assert principal.has("read") and not principal.has("submit")


def test_admin_implies_every_scope() -> None:
    principal = verify_token(settings(), issue_token(settings(), "root", ("admin",)))
    assert principal.has("submit") and principal.has("read")


@pytest.mark.parametrize("missing", ["exp", "iat", "aud", "iss", "sub"])
def test_each_required_claim_is_required(missing: str) -> None:
    token = jwt.encode(claims(**{missing: None}), SECRET, algorithm="HS256")
    with pytest.raises(TokenError):
        verify_token(settings(), token)


@pytest.mark.parametrize("bad", [
    {"exp": int(time.time()) - 3600},
    {"nbf": int(time.time()) + 3600},
    {"aud": "someone-else"},
    {"iss": "evil"},
])
def test_expired_future_or_foreign_tokens_are_refused(bad: dict) -> None:
    with pytest.raises(TokenError):
        verify_token(settings(), jwt.encode(claims(**bad), SECRET, algorithm="HS256"))


def test_alg_none_and_other_algorithms_are_refused() -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(TokenError):
        verify_token(settings(), unsigned)
    with pytest.raises(TokenError):
        verify_token(settings(), jwt.encode(claims(), SECRET, algorithm="HS512"))


def test_tampered_signature_is_refused() -> None:
    token = issue_token(settings(), "alice")
    head, _body, sig = token.split(".")
    forged_body = jwt.utils.base64url_encode(b'{"sub":"admin"}').decode()
    with pytest.raises(TokenError):
        verify_token(settings(), f"{head}.{forged_body}.{sig}")


def test_key_rotation_with_kid() -> None:
    k1, k2 = {"k1": "a" * 40}, {"k2": "b" * 40}
    old = load_settings(jwt_keys=json.dumps(k1), jwt_active_kid="k1")
    both = load_settings(jwt_keys=json.dumps(k1 | k2), jwt_active_kid="k2")
    new_only = load_settings(jwt_keys=json.dumps(k2), jwt_active_kid="k2")
    old_token, new_token = issue_token(old, "alice"), issue_token(both, "alice")
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert verify_token(both, old_token).subject == "alice"  # during rotation both verify
    assert verify_token(new_only, new_token).subject == "alice"
    with pytest.raises(TokenError):
        verify_token(new_only, old_token)  # after rotation the old key is gone


def test_no_secret_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TokenError, match="JWT_SECRET"):
        issue_token(load_settings(data_dir=tmp_path, jwt_secret=""), "alice")


def test_a_verified_token_is_remembered_only_while_it_would_still_verify() -> None:
    """verify_token remembers tokens it accepted (a client repeats its token on every request); the
    memory must never accept what a full verification would refuse: after expiry, or for a server
    that no longer trusts the audience."""
    strict = settings(jwt_leeway_seconds=0)
    token = issue_token(strict, "alice", ttl_seconds=1)
    first = verify_token(strict, token)
    assert verify_token(strict, token) is first  # the second check is answered from memory
    with pytest.raises(TokenError):
        verify_token(settings(jwt_leeway_seconds=0, jwt_audience="another-api"), token)
    time.sleep(1.1)
    with pytest.raises(TokenError):
        verify_token(strict, token)
