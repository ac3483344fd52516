"""model lifecycle: versions and their states, reprocessing runs, shadow results, retention

Revision ID: d8e9f0a1b2c3
Revises: c1f0a2b3d4e5
Create Date: 2026-11-27 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "d8e9f0a1b2c3"
down_revision = "c1f0a2b3d4e5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("shadow_sample", sa.Float(), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", "version"),
    )
    op.create_table(
        "model_version_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_model_version_changes_name", "model_version_changes", ["name"])
    op.create_table(
        "reprocess_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("baseline_version", sa.String(length=100), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("only_positive", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("flipped", sa.Integer(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("cursor_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cursor_id", sa.String(length=36), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reprocess_runs_model_status", "reprocess_runs", ["model", "status"])
    op.create_table(
        "reprocess_flips",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("old_label", sa.String(length=64), nullable=False),
        sa.Column("new_label", sa.String(length=64), nullable=False),
        sa.Column("old_score", sa.Float(), nullable=True),
        sa.Column("new_score", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["reprocess_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "job_id"),
    )
    op.create_table(
        "reprocess_items",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("score_delta", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["reprocess_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "job_id"),
    )
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="verdict"))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("notify_rescreen", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index("ix_jobs_status_created", ["status", "created_at"])
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("retention_days")
    with op.batch_alter_table("media") as batch:
        batch.drop_column("deleted_at")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_status_created")
        batch.drop_column("notify_rescreen")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("kind")
    op.drop_table("reprocess_items")
    op.drop_table("reprocess_flips")
    op.drop_index("ix_reprocess_runs_model_status", table_name="reprocess_runs")
    op.drop_table("reprocess_runs")
    op.drop_index("ix_model_version_changes_name", table_name="model_version_changes")
    op.drop_table("model_version_changes")
    op.drop_table("model_versions")
