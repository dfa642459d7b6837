"""SavepointSQLOperator on SQLite and PostgreSQL: each statement in its own savepoint, per-statement policy."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from resilient_etl.exceptions import DatabaseError
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.operators.sql import SavepointSQLOperator

SETUP = ["CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL CHECK (amount >= 0))"]


def _ledger() -> list[tuple[int, int]]:
    with WarehouseHook().begin() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT id, amount FROM ledger ORDER BY id"))]


@pytest.fixture
def ledger(warehouse_conn) -> None:
    with WarehouseHook().begin() as conn:
        conn.execute(text(SETUP[0]))


def test_continue_rolls_back_only_the_bad_statement(ledger) -> None:
    op = SavepointSQLOperator(
        task_id="t",
        on_error="continue",
        sql=[
            "INSERT INTO ledger VALUES (1, 10)",
            "INSERT INTO ledger VALUES (1, 20)",  # duplicate key
            "INSERT INTO ledger VALUES (2, -5)",  # check constraint
            "UPDATE ledger SET amount = amount + 1 WHERE id = 1",
        ],
    )
    report = op.execute({})
    assert report["executed"] == 2
    assert [(r["index"], r["category"]) for r in report["rolled_back"]] == [(1, "integrity"), (2, "integrity")]
    assert report["rows_affected"] == [1, 0, 0, 1]
    assert _ledger() == [(1, 11)]


def test_abort_rolls_back_everything_and_fails_typed(ledger) -> None:
    op = SavepointSQLOperator(
        task_id="t",
        sql=[
            "INSERT INTO ledger VALUES (1, 10)",
            {"sql": "INSERT INTO ledger VALUES (9, -1)", "on_error": "continue"},
            "INSERT INTO ledger VALUES (1, 20)",  # aborts (the default policy)
        ],
    )
    with pytest.raises(DatabaseError):
        op.execute({})
    assert _ledger() == []


def test_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="on_error"):
        SavepointSQLOperator(task_id="t", sql=["SELECT 1"], on_error="ignore")
    with pytest.raises(ValueError, match=r"sql\[0\].on_error"):
        SavepointSQLOperator(task_id="t", sql=[{"sql": "SELECT 1", "on_error": "skip"}])._statements()


def test_warehouse_maintenance_dag_purges_old_working_data(airflow_db, sqlite_warehouse) -> None:
    from pathlib import Path

    from airflow.dag_processing.dagbag import BundleDagBag

    from resilient_etl.hooks.warehouse.schema import breaker_events, staged_rows

    wh = WarehouseHook()
    wh.ensure_schema()
    old, new = dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime.now(dt.UTC)
    with wh.begin() as conn:
        for run_id, when in (("old-run", old), ("new-run", new)):
            conn.execute(
                staged_rows.insert().values(run_id=run_id, source_file="f.csv", line_number=2, raw_row="{}", status="loaded", staged_at=when)
            )
            conn.execute(breaker_events.insert().values(name="x", from_state="closed", to_state="open", reason="r", at=when))
    dags = Path(__file__).resolve().parents[2] / "dags"
    bag = BundleDagBag(dag_folder=str(dags / "warehouse_maintenance.py"), bundle_path=dags)
    assert bag.import_errors == {}
    run = bag.dags["warehouse_maintenance"].test()
    assert run.state == "success"
    with wh.begin() as conn:
        assert conn.execute(text("SELECT run_id FROM staged_rows")).scalars().all() == ["new-run"]
        assert conn.execute(text("SELECT count(*) FROM breaker_events")).scalar_one() == 1
