"""Operator commands: migrations, tokens, API keys."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

from cli.settings_check import settings_or_exit
from core.api_keys import check_rate_limit, create_api_key, list_api_keys, revoke_api_key
from core.db import session_scope
from core.tokens import SCOPES, TokenError, issue_token


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations to DATABASE_URL."""
    from core.migrate import upgrade

    settings = settings_or_exit()
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}")


def _scopes(value: str) -> tuple[str, ...]:
    scopes = tuple(s for s in value.replace(",", " ").split() if s)
    bad = set(scopes) - set(SCOPES)
    if bad:
        raise click.BadParameter(f"unknown scopes {sorted(bad)}; choose from {', '.join(SCOPES)}")
    return scopes


@click.group()
def token() -> None:
    """JWTs for operators and scripts."""


@token.command("create")
@click.option("--subject", required=True, help="Who the token speaks for (jobs are owned by it)")
@click.option("--scopes", default="submit read", show_default=True, help="Space or comma list")
@click.option("--ttl", type=int, default=None, help="Lifetime in seconds (default JWT_TTL_SECONDS)")
def token_create(subject: str, scopes: str, ttl: int | None) -> None:
    """Print a signed token."""
    try:
        click.echo(issue_token(settings_or_exit(), subject, _scopes(scopes), ttl))
    except TokenError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def apikey() -> None:
    """API keys (stored hashed; traded for JWTs at POST /v1/auth/token)."""


DURATION = re.compile(r"^(\d+)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    match = DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter("a positive count and a unit: 3600s, 90m, 12h, 30d, 2w")
    return timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])


def _rate_limit(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_rate_limit(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@apikey.command("create")
@click.option("--subject", required=True, help="Who the key speaks for (its jobs are owned by it)")
@click.option("--scopes", default="submit read", show_default=True, help="Space or comma list")
@click.option("--rate-limit", default=None, callback=_rate_limit,
              help="The key's own limit on every request its tokens make, e.g. 60/minute")
@click.option("--expires-in", default=None, callback=_duration,
              help="The key (and every token from it) stops working after this: 12h, 30d, 2w")
@click.option("--retention-days", type=click.IntRange(min=1), default=None,
              help="Expire this subject's uploads after N days (instead of RETENTION_DAYS)")
def apikey_create(subject: str, scopes: str, rate_limit: str | None, expires_in: timedelta | None,
                  retention_days: int | None) -> None:
    """Print a new key. It is shown once: only its hash is stored.

    A personal key for a browser-extension user: --scopes "submit read" --rate-limit 60/minute --expires-in 30d.
    """
    settings_or_exit()
    expires_at = datetime.now(UTC) + expires_in if expires_in else None
    with session_scope() as session:
        key = create_api_key(session, subject, _scopes(scopes), rate_limit=rate_limit, expires_at=expires_at,
                             retention_days=retention_days)
    click.echo(key)


@apikey.command("list")
def apikey_list() -> None:
    """Every key: id, subject, scopes, rate limit, expiry, state (secrets are never stored)."""
    settings_or_exit()
    now = datetime.now(UTC)
    with session_scope() as session:
        for row in list_api_keys(session):
            expires = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC) if row.expires_at else None
            state = ("revoked" if row.revoked_at else "expired" if expires and expires <= now else "live")
            click.echo("\t".join([row.id, row.subject, row.scopes, row.rate_limit or "-",
                                  expires.isoformat(timespec="seconds") if expires else "-", state]))


@apikey.command("revoke")
@click.argument("key_id")
def apikey_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after ``ds_``)."""
    settings_or_exit()
    with session_scope() as session:
        if not revoke_api_key(session, key_id):
            raise click.ClickException(f"no live key {key_id}")
    click.echo(f"revoked {key_id}")
