"""Operator commands: migrations, tokens, API keys."""

from __future__ import annotations

import click

from cli.settings_check import settings_or_exit
from core.api_keys import create_api_key, revoke_api_key
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


@apikey.command("create")
@click.option("--subject", required=True)
@click.option("--scopes", default="submit read", show_default=True)
def apikey_create(subject: str, scopes: str) -> None:
    """Print a new key. It is shown once: only its hash is stored."""
    settings_or_exit()
    with session_scope() as session:
        key = create_api_key(session, subject, _scopes(scopes))
    click.echo(key)


@apikey.command("revoke")
@click.argument("key_id")
def apikey_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after ``ds_``)."""
    settings_or_exit()
    with session_scope() as session:
        if not revoke_api_key(session, key_id):
            raise click.ClickException(f"no live key {key_id}")
    click.echo(f"revoked {key_id}")
