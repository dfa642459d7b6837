"""
The warehouse tables, defined once with SQLAlchemy Core so each dialect gets its own DDL.

Changing a table needs a migration in ``migrations/versions`` (tests/unit/hooks/warehouse/test_migrations.py
fails while the two differ). Contract tables (ARCHITECTURE.md): suppliers, quarantine, etl_checkpoints, pipeline_runs, the postcode and
company caches, incidents. ``staged_rows`` holds a run's rows between extract and load, so every task can
be retried on its own and XCom carries only summaries.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, Column, Date, DateTime, Float, Index, Integer, MetaData, Numeric, String, Table, Text, text

from resilient_etl.resilience.stores.sql import metadata as _store_metadata

metadata = MetaData()
store_tables = tuple(_store_metadata.sorted_tables)

ENRICHMENT_STATUSES = ("live", "cached", "fallback", "pending")


def as_utc(value: dt.datetime) -> dt.datetime:
    """Return a timestamp read from the warehouse as aware UTC: SQLite hands ``DateTime(timezone=True)`` back naive."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


suppliers = Table(
    "suppliers",
    metadata,
    Column("supplier_id", String(64), primary_key=True),
    Column("company_number", String(8), nullable=False),
    Column("company_name", String(255), nullable=False),
    Column("address_line_1", String(255)),
    Column("town", String(100)),
    Column("postcode", String(8), nullable=False),
    Column("annual_spend_gbp", Numeric(14, 2)),
    Column("onboarded_on", Date),
    Column("pc_country", String(50)),
    Column("pc_region", String(100)),
    Column("pc_admin_district", String(100)),
    Column("pc_latitude", Float),
    Column("pc_longitude", Float),
    Column("co_name", String(255)),
    Column("co_status", String(50)),
    Column("co_type", String(100)),
    Column("co_incorporated_on", Date),
    Column("co_sic_codes", String(100)),
    Column("co_registered_office", String(500)),
    Column("enrichment_status", String(10), nullable=False),
    # when the oldest answer used was fetched: the age of cached data
    Column("enrichment_as_of", DateTime(timezone=True)),
    Column("source_file", String(255), nullable=False),
    Column("source_line", Integer, nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("loaded_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("enrichment_status IN ('live', 'cached', 'fallback', 'pending')", name="ck_suppliers_enrichment_status"),
    CheckConstraint("annual_spend_gbp IS NULL OR annual_spend_gbp >= 0", name="ck_suppliers_spend_not_negative"),
    # SQLite ignores VARCHAR lengths: enforce the ones enrichment data could overrun everywhere
    CheckConstraint("length(co_registered_office) <= 500", name="ck_suppliers_registered_office_length"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False),
    Column("stage", String(20), nullable=False),
    Column("source_file", String(255), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("raw_row", Text, nullable=False),
    Column("error_category", String(50), nullable=False),
    Column("detail", Text, nullable=False),
    Column("quarantined_at", DateTime(timezone=True), nullable=False),
    # set when `resilient-etl quarantine replay` wrote the row back to landing (migration 0004): a row is
    # replayed once, and the file it went into traces it to the run that took it
    Column("replayed_at", DateTime(timezone=True)),
    Column("replay_file", String(255)),
    Index("ix_quarantine_run", "run_id", "stage"),
)

staged_rows = Table(
    "staged_rows",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("source_file", String(255), primary_key=True),
    Column("line_number", Integer, primary_key=True),
    Column("raw_row", Text, nullable=False),
    # the validated, normalised values (typed), so the load is one INSERT ... SELECT in the database
    Column("supplier_id", String(64)),
    Column("company_number", String(8)),
    Column("company_name", String(255)),
    Column("address_line_1", String(255)),
    Column("town", String(100)),
    Column("postcode", String(8)),
    Column("annual_spend_gbp", Numeric(14, 2)),
    Column("onboarded_on", Date),
    # staged -> valid -> loaded | pending ; or quarantined at validate or load
    Column("status", String(12), nullable=False),
    Column("staged_at", DateTime(timezone=True), nullable=False),
    # each task picks up the rows still in its input status, in file order: without this index every
    # load batch would scan past the rows already loaded
    Index("ix_staged_rows_run_status", "run_id", "status", "source_file", "line_number"),
)

etl_checkpoints = Table(
    "etl_checkpoints",
    metadata,
    Column("dag_id", String(250), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("source_file", String(255), primary_key=True),
    Column("chunk_index", Integer, primary_key=True),
    Column("first_line", Integer, nullable=False),
    Column("last_line", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("committed_at", DateTime(timezone=True), nullable=False),
    # where the chunk was committed (migration 0002): a load resumed after a crash shows both workers
    Column("hostname", String(250)),
    Column("try_number", Integer),
)

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("dag_id", String(250), nullable=False),
    Column("files", Text, nullable=False),
    Column("rows_in", Integer, nullable=False),
    Column("rows_loaded", Integer, nullable=False),
    Column("rows_quarantined", Integer, nullable=False),
    Column("rows_pending", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("summary", Text, nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
)


def _cache_table(name: str, key: str) -> Table:
    """An API answer cache: the whole answer per key, kept for fallbacks (postcodes, companies)."""
    return Table(
        name,
        metadata,
        Column(key, String(8), primary_key=True),
        Column("found", Boolean, nullable=False),
        Column("result", Text),
        Column("fetched_at", DateTime(timezone=True), nullable=False),
        Column("run_id", String(250), nullable=False),
    )


postcode_cache = _cache_table("postcode_cache", "postcode")
company_cache = _cache_table("company_cache", "company_number")

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(500), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("task_id", String(250)),
    Column("category", String(50), nullable=False),
    Column("severity", String(4), nullable=False),
    Column("escalation_level", Integer, nullable=False, default=0),
    Column("status", String(12), nullable=False),
    Column("occurrences", Integer, nullable=False, default=1),
    Column("run_id", String(250)),  # the run of the latest occurrence
    Column("error_type", String(100)),
    Column("detail", Text),  # the latest error, redacted
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
    Index("ix_incidents_dedup_key", "dedup_key"),
    # At most one active incident per key, even when two callbacks (a deadline's warn and page tiers
    # in the triggerer, parallel task failures) record the same failure at the same moment.
    Index(
        "ux_incidents_active_key",
        "dedup_key",
        unique=True,
        sqlite_where=text("status IN ('open', 'acknowledged')"),
        postgresql_where=text("status IN ('open', 'acknowledged')"),
        mssql_where=text("status IN ('open', 'acknowledged')"),
    ),
)

# The shared-state store's own tables (quota pacing, breaker state and window), created with the rest.
shared_pacing, breaker_state, breaker_buckets = (table.to_metadata(metadata) for table in store_tables)

# Every breaker state change, for people and dashboards.
breaker_events = Table(
    "breaker_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("from_state", String(10), nullable=False),
    Column("to_state", String(10), nullable=False),
    Column("reason", Text, nullable=False),
    Column("calls", Integer),
    Column("failures", Integer),
    Column("consecutive_failures", Integer),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_breaker_events_name_at", "name", "at"),
)

# How each of a run's distinct postcodes and company numbers was enriched: live, cached (an earlier
# live answer), fallback (the bundled reference extract) or pending (nothing: re-enriched later).
run_enrichment = Table(
    "run_enrichment",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("kind", String(10), primary_key=True),  # postcode | company
    Column("lookup_key", String(8), primary_key=True),
    Column("source", String(10), nullable=False),
    Column("found", Boolean),
    Column("as_of", DateTime(timezone=True)),  # when the answer was fetched (its age for cached data)
    # the supplier columns derived from the answer (pc_* for postcodes, co_* for companies)
    *(Column(c.name, c.type) for c in suppliers.columns if c.name.startswith(("pc_", "co_"))),
)

# Data-quality results per run, file and rule, with the thresholds in force: why a file passed,
# warned or failed.
quality_results = Table(
    "quality_results",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("source_file", String(255), primary_key=True),
    Column("rule", String(50), primary_key=True),
    Column("rows_checked", Integer, nullable=False),
    Column("rows_failed", Integer, nullable=False),
    Column("share", Float, nullable=False),
    Column("warn_threshold", Float, nullable=False),
    Column("fail_threshold", Float, nullable=False),
    Column("verdict", String(4), nullable=False),  # pass | warn | fail
    Column("checked_at", DateTime(timezone=True), nullable=False),
)

# The latest health of each component (DAG pipeline_health): a change of status alerts or recovers.
health_status = Table(
    "health_status",
    metadata,
    Column("component", String(100), primary_key=True),
    Column("status", String(4), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
    Column("output", Text),
)

# One row per failure drill (resilient-etl drill run, migration 0003): the fault, when it was detected,
# when the pipeline recovered, and what was lost or doubled; ``result`` holds the whole record as JSON.
drill_results = Table(
    "drill_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scenario", String(100), nullable=False),
    Column("target", String(100), nullable=False),
    Column("executor", String(20), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("fault_started_at", DateTime(timezone=True)),
    Column("detected_at", DateTime(timezone=True)),
    Column("detected_by", String(50)),
    Column("fault_ended_at", DateTime(timezone=True)),
    Column("recovered_at", DateTime(timezone=True)),
    Column("time_to_detect_s", Float),
    Column("rto_s", Float),
    Column("recover_after_fault_s", Float),
    Column("rows_lost", Integer),
    Column("rows_duplicated", Integer),
    Column("dead_requests", Integer),
    Column("retries_used", Integer),
    Column("passed", Boolean, nullable=False),
    Column("result", Text, nullable=False),
    Index("ix_drill_results_scenario", "scenario", "started_at"),
)

# Every manual override (migration 0004): pause/resume, breakers forced, live enrichment suspended,
# quarantine replays, rejected files requeued, incidents resolved, restores; who, when, why, and which
# earlier override a reversal undoes. ``details`` is JSON (secrets never go here).
manual_overrides = Table(
    "manual_overrides",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action", String(50), nullable=False),
    Column("target", String(255), nullable=False),
    Column("by_user", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("until", DateTime(timezone=True)),  # an override that lapses by itself (breaker open, enrichment off)
    Column("reverses", Integer),  # the id of the override this one undoes
    Column("details", Text, nullable=False),
    Index("ix_manual_overrides_action_target", "action", "target", "at"),
)
