"""job leases, retry backoff, durable webhook state, worker heartbeats, result validation

Revision ID: b7d2c4e1a9f0
Revises: 989a25424808
Create Date: 2026-11-27 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b7d2c4e1a9f0"
down_revision = "989a25424808"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=160), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("available_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("webhook_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("webhook_updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("queue", sa.String(length=64), nullable=False, server_default="inference"))
        batch.create_index("ix_jobs_claim", ["status", "queue", "created_at"])
        batch.create_index("ix_jobs_status_lease", ["status", "lease_expires_at"])
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("validation", sa.JSON(), nullable=True))
    op.create_table(
        "worker_heartbeats",
        sa.Column("id", sa.String(length=160), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_worker_heartbeats_last_seen_at", "worker_heartbeats", ["last_seen_at"])


def downgrade() -> None:
    op.drop_index("ix_worker_heartbeats_last_seen_at", table_name="worker_heartbeats")
    op.drop_table("worker_heartbeats")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("validation")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_status_lease")
        batch.drop_index("ix_jobs_claim")
        for column in ("queue", "request_id", "webhook_updated_at", "webhook_status", "retries", "available_at", "lease_expires_at",
                       "lease_owner"):
            batch.drop_column(column)
