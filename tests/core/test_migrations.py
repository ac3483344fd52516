"""The migrations build exactly the schema the models describe (on PostgreSQL and SQLite), and go
down and up again cleanly."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import core.lifecycle_models  # noqa: F401  (its tables belong to the same metadata)
from core.migrate import alembic_config, upgrade
from core.models import Base
from tests.conftest import PG_ADMIN


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.db'}"
        return
    name = f"deepscreen_schema_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    # SQLite cannot name or alter some constraints the same way; types and columns must still agree.
    return [d for d in diffs if not (url.startswith("sqlite") and d[0] in ("add_fk", "remove_fk"))]


def test_migrations_build_the_models_schema(empty_database: str) -> None:
    upgrade(empty_database)
    assert _differences(empty_database) == []


def test_downgrade_to_the_first_revision_and_up_again(empty_database: str) -> None:
    from alembic import command

    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "989a25424808")
    upgrade(empty_database)
    assert _differences(empty_database) == []
