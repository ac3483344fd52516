"""client features: batches, URL submissions, personal extension keys

Revision ID: c1f0a2b3d4e5
Revises: b7d2c4e1a9f0
Create Date: 2026-11-27 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c1f0a2b3d4e5"
down_revision = "b7d2c4e1a9f0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_batches_owner_idempotency_key"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_jobs_batch_id", ["batch_id"])
        batch.create_foreign_key("fk_jobs_batch_id_batches", "batches", ["batch_id"], ["id"], ondelete="SET NULL")
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rate_limit", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("rate_limit")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("fk_jobs_batch_id_batches", type_="foreignkey")
        batch.drop_index("ix_jobs_batch_id")
        batch.drop_column("batch_id")
    op.drop_table("batches")
