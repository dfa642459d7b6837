"""
Warehouse migrations on real SQLite and PostgreSQL: a warehouse of the release before migrations is
upgraded with every row intact, the pipeline refuses a warehouse that is behind, and a downgrade undoes one step.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, inspect, select

from _support.paths import PREVIOUS_RELEASE, REPO
from resilient_etl.exceptions import Category
from resilient_etl.hooks.warehouse import WarehouseHook, migrations
from resilient_etl.hooks.warehouse.migrations import SchemaOutOfDateError
from resilient_etl.hooks.warehouse.schema import metadata

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def previous_release_metadata() -> MetaData:
    """Return the warehouse tables exactly as the previous release defined them (its schema.py, from git)."""
    source = subprocess.run(
        ["git", "show", f"{PREVIOUS_RELEASE}:include/resilient_etl/hooks/warehouse/schema.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("previous_schema")
    exec(compile(source, "previous_schema.py", "exec"), module.__dict__)
    return module.metadata


def _seed(conn, tables: MetaData) -> None:
    t = tables.tables
    conn.execute(
        t["suppliers"].insert(),
        [
            {
                "supplier_id": f"S{i:05d}",
                "company_number": "00445790",
                "company_name": f"Supplier {i}",
                "postcode": "SW1A 1AA",
                "enrichment_status": "live",
                "source_file": "suppliers.csv",
                "source_line": i + 2,
                "run_id": "manual__old",
                "loaded_at": NOW,
            }
            for i in range(250)
        ],
    )
    conn.execute(
        t["etl_checkpoints"].insert(),
        [
            {"dag_id": "company_enrichment", "run_id": "manual__old", "task_id": "load", "map_index": -1, "source_file": "suppliers.csv"}
            | {"chunk_index": c, "first_line": c * 100 + 2, "last_line": c * 100 + 101, "rows": 100, "committed_at": NOW}
            for c in range(3)
        ],
    )


def _snapshot(conn) -> dict[str, list]:
    return {
        "suppliers": conn.execute(select(metadata.tables["suppliers"]).order_by("supplier_id")).all(),
        "etl_checkpoints": [r[:10] for r in conn.execute(select(metadata.tables["etl_checkpoints"]).order_by("chunk_index")).all()],
    }


@pytest.mark.postgres
def test_a_previous_release_warehouse_upgrades_with_every_row_intact_and_downgrades_step_by_step(warehouse_conn: dict[str, object]) -> None:
    warehouse = WarehouseHook("warehouse_default")
    old = previous_release_metadata()
    with warehouse.begin() as conn:
        old.create_all(conn)
        _seed(conn, old)
        assert migrations.current(conn) == migrations.BASELINE  # no version table, the old tables
    with pytest.raises(SchemaOutOfDateError) as refused:
        warehouse.ensure_schema()  # what every pipeline task does first
    assert refused.value.category is Category.CONFIGURATION
    assert "revision 0001" in str(refused.value) and "needs 0004" in str(refused.value) and "resilient-etl db upgrade" in str(refused.value)

    with warehouse.begin() as conn:
        assert migrations.upgrade(conn) == ("0001", "0004")
    with warehouse.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("etl_checkpoints")}
        assert {"hostname", "try_number"} <= columns
        upgraded = _snapshot(conn)
        assert len(upgraded["suppliers"]) == 250 and len(upgraded["etl_checkpoints"]) == 3
        assert conn.execute(select(metadata.tables["etl_checkpoints"].c.hostname)).scalars().all() == [None] * 3
    warehouse.ensure_schema()  # at head: accepted

    with warehouse.begin() as conn:
        assert migrations.downgrade(conn, "-1") == ("0004", "0003")
        assert "manual_overrides" not in inspect(conn).get_table_names()
        assert "replayed_at" not in {c["name"] for c in inspect(conn).get_columns("quarantine")}
        assert migrations.downgrade(conn, "-1") == ("0003", "0002")
        assert "drill_results" not in inspect(conn).get_table_names()
        assert migrations.downgrade(conn, "-1") == ("0002", "0001")
    with warehouse.connect() as conn:
        assert "hostname" not in {c["name"] for c in inspect(conn).get_columns("etl_checkpoints")}
        assert conn.execute(select(old.tables["suppliers"]).order_by("supplier_id")).all() == upgraded["suppliers"]
    with warehouse.begin() as conn:
        assert migrations.upgrade(conn) == ("0001", "0004")
    with warehouse.connect() as conn:
        assert _snapshot(conn) == upgraded


@pytest.mark.postgres
def test_the_migrations_build_exactly_the_schema_the_code_declares(warehouse_conn: dict[str, object]) -> None:
    warehouse = WarehouseHook("warehouse_default")
    with warehouse.begin() as conn:
        migrations.upgrade(conn, "0001")  # one migration at a time, not the empty-warehouse shortcut
        baseline_diff = compare_metadata(
            MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE}), previous_release_metadata()
        )
        migrations.upgrade(conn, "head")
        head_diff = compare_metadata(MigrationContext.configure(conn, opts={"version_table": migrations.VERSION_TABLE}), metadata)
    assert baseline_diff == []  # the baseline is the previous release's schema
    assert head_diff == []  # a change to schema.py without its migration fails here


def test_an_empty_warehouse_is_created_at_head_and_a_newer_one_is_refused(sqlite_warehouse: dict[str, object]) -> None:
    warehouse = WarehouseHook("warehouse_default")
    warehouse.ensure_schema()
    with warehouse.connect() as conn:
        assert migrations.current(conn) == migrations.head()
    with warehouse.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0099'")
    with pytest.raises(SchemaOutOfDateError, match="0099.*newer release"):
        warehouse.ensure_schema()


def test_db_cli_reports_upgrades_downgrades_and_history(sqlite_warehouse: dict[str, object], tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("resilient-etl"))
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}  # it prints a banner on stdout
    env["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] = json.dumps(sqlite_warehouse)

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, "db", *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    assert json.loads(db("current", "-o", "json").stdout)[0]["current"] == "(empty warehouse)"
    assert "(empty) -> 0004" in db("upgrade").stdout
    assert "0004 -> 0003" in db("downgrade", "-1").stdout
    behind = db("current", "-o", "json")
    assert behind.returncode == 1 and json.loads(behind.stdout) == [{"current": "0003", "head": "0004", "up_to_date": False}]
    assert "0003 -> 0004" in db("upgrade").stdout
    history = json.loads(db("history", "-o", "json").stdout)
    assert [(r["revision"], r["head"]) for r in history] == [("0004", True), ("0003", False), ("0002", False), ("0001", False)]
    assert db("downgrade").returncode == 2


def test_any_pipeline_task_refuses_a_warehouse_behind_the_code(sqlite_warehouse: dict[str, object]) -> None:
    from resilient_etl.operators.load import LoadSuppliersOperator

    with WarehouseHook("warehouse_default").begin() as conn:
        migrations.upgrade(conn, "0001")
    load = LoadSuppliersOperator(task_id="load", batch_size=500)  # a load cleared alone after a deploy
    with pytest.raises(SchemaOutOfDateError, match="revision 0001, the code needs 0004"):
        load.warehouse  # noqa: B018 - the first use checks the schema
