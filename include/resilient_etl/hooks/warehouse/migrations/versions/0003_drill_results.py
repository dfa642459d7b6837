"""
Failure drills record what they measured (drill_results).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drill_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("scenario", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("executor", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fault_started_at", sa.DateTime(timezone=True)),
        sa.Column("detected_at", sa.DateTime(timezone=True)),
        sa.Column("detected_by", sa.String(length=50)),
        sa.Column("fault_ended_at", sa.DateTime(timezone=True)),
        sa.Column("recovered_at", sa.DateTime(timezone=True)),
        sa.Column("time_to_detect_s", sa.Float()),
        sa.Column("rto_s", sa.Float()),
        sa.Column("recover_after_fault_s", sa.Float()),
        sa.Column("rows_lost", sa.Integer()),
        sa.Column("rows_duplicated", sa.Integer()),
        sa.Column("dead_requests", sa.Integer()),
        sa.Column("retries_used", sa.Integer()),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
    )
    op.create_index("ix_drill_results_scenario", "drill_results", ["scenario", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_drill_results_scenario", table_name="drill_results")
    op.drop_table("drill_results")
