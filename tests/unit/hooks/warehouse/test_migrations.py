"""The migrations compile for SQL Server (no server here: offline SQL, asserted as text)."""

from __future__ import annotations

from resilient_etl.hooks.warehouse import migrations


def test_every_migration_compiles_for_sql_server_both_ways() -> None:
    up = migrations.offline_sql("mssql", "base:head")
    assert "CREATE TABLE suppliers" in up and "DATETIMEOFFSET" in up
    assert "CREATE UNIQUE INDEX ux_incidents_active_key ON incidents (dedup_key) WHERE status IN ('open', 'acknowledged')" in up
    assert "ALTER TABLE etl_checkpoints ADD hostname VARCHAR(250) NULL" in up
    assert f"CREATE TABLE {migrations.VERSION_TABLE}" in up
    assert "CREATE TABLE drill_results" in up and "passed BIT NOT NULL" in up
    down = migrations.offline_sql("mssql", "0002:0001")
    assert "ALTER TABLE etl_checkpoints DROP COLUMN hostname" in down and "DROP COLUMN try_number" in down
    assert "DROP TABLE drill_results" in migrations.offline_sql("mssql", "0003:0002")
    assert "CREATE TABLE manual_overrides" in up and "ALTER TABLE quarantine ADD replayed_at DATETIMEOFFSET NULL" in up
    assert "DROP TABLE manual_overrides" in migrations.offline_sql("mssql", "0004:0003")


def test_history_is_one_line_from_the_baseline_to_the_head() -> None:
    revisions = migrations.history()
    assert [r.revision for r in revisions] == ["0004", "0003", "0002", "0001"]
    assert revisions[-1].down_revision is None and revisions[0].down_revision == "0003"
    assert migrations.head() == "0004"
