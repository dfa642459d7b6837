"""
Baseline: the warehouse as the release before migrations created it (``metadata.create_all``).

A warehouse created by that release has these tables and no version table; ``resilient-etl db upgrade``
stamps it at this revision and goes on from here.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "breaker_buckets",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("bucket_start", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", "bucket_start"),
    )
    op.create_table(
        "breaker_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("from_state", sa.String(length=10), nullable=False),
        sa.Column("to_state", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_breaker_events_name_at", "breaker_events", ["name", "at"], unique=False)
    op.create_table(
        "breaker_state",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("probe_until", sa.Float(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("half_open_successes", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "company_cache",
        sa.Column("company_number", sa.String(length=8), nullable=False),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.PrimaryKeyConstraint("company_number"),
    )
    op.create_table(
        "etl_checkpoints",
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("source_file", sa.String(length=255), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=False),
        sa.Column("last_line", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dag_id", "run_id", "task_id", "map_index", "source_file", "chunk_index"),
    )
    op.create_table(
        "health_status",
        sa.Column("component", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=4), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("component"),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(length=500), nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=True),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("severity", sa.String(length=4), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("error_type", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incidents_dedup_key", "incidents", ["dedup_key"], unique=False)
    op.create_index(
        "ux_incidents_active_key",
        "incidents",
        ["dedup_key"],
        unique=True,
        sqlite_where=sa.text("status IN ('open', 'acknowledged')"),
        postgresql_where=sa.text("status IN ('open', 'acknowledged')"),
        mssql_where=sa.text("status IN ('open', 'acknowledged')"),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("rows_in", sa.Integer(), nullable=False),
        sa.Column("rows_loaded", sa.Integer(), nullable=False),
        sa.Column("rows_quarantined", sa.Integer(), nullable=False),
        sa.Column("rows_pending", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "postcode_cache",
        sa.Column("postcode", sa.String(length=8), nullable=False),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.PrimaryKeyConstraint("postcode"),
    )
    op.create_table(
        "quality_results",
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("source_file", sa.String(length=255), nullable=False),
        sa.Column("rule", sa.String(length=50), nullable=False),
        sa.Column("rows_checked", sa.Integer(), nullable=False),
        sa.Column("rows_failed", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("warn_threshold", sa.Float(), nullable=False),
        sa.Column("fail_threshold", sa.Float(), nullable=False),
        sa.Column("verdict", sa.String(length=4), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "source_file", "rule"),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("source_file", sa.String(length=255), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("raw_row", sa.Text(), nullable=False),
        sa.Column("error_category", sa.String(length=50), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_run", "quarantine", ["run_id", "stage"], unique=False)
    op.create_table(
        "run_enrichment",
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("lookup_key", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("found", sa.Boolean(), nullable=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pc_country", sa.String(length=50), nullable=True),
        sa.Column("pc_region", sa.String(length=100), nullable=True),
        sa.Column("pc_admin_district", sa.String(length=100), nullable=True),
        sa.Column("pc_latitude", sa.Float(), nullable=True),
        sa.Column("pc_longitude", sa.Float(), nullable=True),
        sa.Column("co_name", sa.String(length=255), nullable=True),
        sa.Column("co_status", sa.String(length=50), nullable=True),
        sa.Column("co_type", sa.String(length=100), nullable=True),
        sa.Column("co_incorporated_on", sa.Date(), nullable=True),
        sa.Column("co_sic_codes", sa.String(length=100), nullable=True),
        sa.Column("co_registered_office", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "kind", "lookup_key"),
    )
    op.create_table(
        "shared_pacing",
        sa.Column("pacing_key", sa.String(length=100), nullable=False),
        sa.Column("next_slot_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pacing_key"),
    )
    op.create_table(
        "staged_rows",
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("source_file", sa.String(length=255), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("raw_row", sa.Text(), nullable=False),
        sa.Column("supplier_id", sa.String(length=64), nullable=True),
        sa.Column("company_number", sa.String(length=8), nullable=True),
        sa.Column("company_name", sa.String(length=255), nullable=True),
        sa.Column("address_line_1", sa.String(length=255), nullable=True),
        sa.Column("town", sa.String(length=100), nullable=True),
        sa.Column("postcode", sa.String(length=8), nullable=True),
        sa.Column("annual_spend_gbp", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("onboarded_on", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("staged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "source_file", "line_number"),
    )
    op.create_index("ix_staged_rows_run_status", "staged_rows", ["run_id", "status", "source_file", "line_number"], unique=False)
    op.create_table(
        "suppliers",
        sa.Column("supplier_id", sa.String(length=64), nullable=False),
        sa.Column("company_number", sa.String(length=8), nullable=False),
        sa.Column("company_name", sa.String(length=255), nullable=False),
        sa.Column("address_line_1", sa.String(length=255), nullable=True),
        sa.Column("town", sa.String(length=100), nullable=True),
        sa.Column("postcode", sa.String(length=8), nullable=False),
        sa.Column("annual_spend_gbp", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("onboarded_on", sa.Date(), nullable=True),
        sa.Column("pc_country", sa.String(length=50), nullable=True),
        sa.Column("pc_region", sa.String(length=100), nullable=True),
        sa.Column("pc_admin_district", sa.String(length=100), nullable=True),
        sa.Column("pc_latitude", sa.Float(), nullable=True),
        sa.Column("pc_longitude", sa.Float(), nullable=True),
        sa.Column("co_name", sa.String(length=255), nullable=True),
        sa.Column("co_status", sa.String(length=50), nullable=True),
        sa.Column("co_type", sa.String(length=100), nullable=True),
        sa.Column("co_incorporated_on", sa.Date(), nullable=True),
        sa.Column("co_sic_codes", sa.String(length=100), nullable=True),
        sa.Column("co_registered_office", sa.String(length=500), nullable=True),
        sa.Column("enrichment_status", sa.String(length=10), nullable=False),
        sa.Column("enrichment_as_of", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_file", sa.String(length=255), nullable=False),
        sa.Column("source_line", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("enrichment_status IN ('live', 'cached', 'fallback', 'pending')", name="ck_suppliers_enrichment_status"),
        sa.CheckConstraint("annual_spend_gbp IS NULL OR annual_spend_gbp >= 0", name="ck_suppliers_spend_not_negative"),
        sa.CheckConstraint("length(co_registered_office) <= 500", name="ck_suppliers_registered_office_length"),
        sa.PrimaryKeyConstraint("supplier_id"),
    )


def downgrade() -> None:
    op.drop_table("suppliers")
    op.drop_index("ix_staged_rows_run_status", table_name="staged_rows")
    op.drop_table("staged_rows")
    op.drop_table("shared_pacing")
    op.drop_table("run_enrichment")
    op.drop_index("ix_quarantine_run", table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_table("quality_results")
    op.drop_table("postcode_cache")
    op.drop_table("pipeline_runs")
    op.drop_index(
        "ux_incidents_active_key",
        table_name="incidents",
        sqlite_where=sa.text("status IN ('open', 'acknowledged')"),
        postgresql_where=sa.text("status IN ('open', 'acknowledged')"),
        mssql_where=sa.text("status IN ('open', 'acknowledged')"),
    )
    op.drop_index("ix_incidents_dedup_key", table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("health_status")
    op.drop_table("etl_checkpoints")
    op.drop_table("company_cache")
    op.drop_table("breaker_state")
    op.drop_index("ix_breaker_events_name_at", table_name="breaker_events")
    op.drop_table("breaker_events")
    op.drop_table("breaker_buckets")
