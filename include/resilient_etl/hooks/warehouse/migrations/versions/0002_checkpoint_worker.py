"""
Checkpoints say which worker and which task try committed each chunk (etl_checkpoints.hostname, try_number).

On a cluster a load can resume on another worker after a crash; these two columns show where each chunk
was committed. Both are nullable: rows of earlier releases keep NULL.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("etl_checkpoints") as batch:
        batch.add_column(sa.Column("hostname", sa.String(length=250), nullable=True))
        batch.add_column(sa.Column("try_number", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("etl_checkpoints") as batch:
        batch.drop_column("try_number")
        batch.drop_column("hostname")
