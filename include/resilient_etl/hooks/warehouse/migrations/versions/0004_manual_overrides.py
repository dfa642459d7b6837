"""
Manual overrides are recorded (manual_overrides); quarantined rows remember their replay.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "manual_overrides",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("by_user", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True)),
        sa.Column("reverses", sa.Integer()),
        sa.Column("details", sa.Text(), nullable=False),
    )
    op.create_index("ix_manual_overrides_action_target", "manual_overrides", ["action", "target", "at"])
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("replayed_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("replay_file", sa.String(length=255)))


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("replay_file")
        batch.drop_column("replayed_at")
    op.drop_index("ix_manual_overrides_action_target", table_name="manual_overrides")
    op.drop_table("manual_overrides")
