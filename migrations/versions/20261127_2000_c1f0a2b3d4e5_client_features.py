"""client features: batches, URL submissions, personal extension keys

Revision ID: c1f0a2b3d4e5
Revises: b7d2c4e1a9f0
Create Date: 2026-11-27 20:00:00
"""

from __future__ import annotations

revision = "c1f0a2b3d4e5"
down_revision = "b7d2c4e1a9f0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the client-features work (issue 11)


def downgrade() -> None:
    pass
