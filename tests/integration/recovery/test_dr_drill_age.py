"""Health check ``dr_drills:age``: a fresh setup is healthy; a deployment whose DR drills have not passed lately warns."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import insert

from resilient_etl.config import get_config
from resilient_etl.health import check_health
from resilient_etl.health.checks import dr_drills_check
from resilient_etl.health.model import PASS, WARN
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import drill_results, pipeline_runs

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _status() -> dict[str, tuple[str, str]]:
    doc = check_health(checks={"dr_drills": dr_drills_check(get_config(), now=NOW.timestamp())})
    return {o["componentId"]: (o["status"], o["output"]) for o in doc["checks"]["dr_drills:age"]}


def _drill(conn, scenario: str, *, days_ago: float, passed: bool) -> None:
    at = NOW - dt.timedelta(days=days_ago)
    conn.execute(
        insert(drill_results).values(
            scenario=scenario, target="local", executor="local", started_at=at, passed=passed, result=json.dumps({"scenario": scenario})
        )
    )


def test_a_fresh_setup_is_healthy_and_an_overdue_drill_warns(sqlite_warehouse) -> None:
    warehouse = WarehouseHook()
    warehouse.ensure_schema()
    assert {k: v[0] for k, v in _status().items()} == {"dr-restore": PASS, "pg-failover": PASS}  # nothing run yet, nothing due
    with warehouse.begin() as conn:
        conn.execute(
            insert(pipeline_runs).values(
                run_id="r",
                dag_id="company_enrichment",
                files="[]",
                rows_in=0,
                rows_loaded=0,
                rows_quarantined=0,
                rows_pending=0,
                status="success",
                summary="{}",
                finished_at=NOW - dt.timedelta(days=20),
            )
        )
        _drill(conn, "dr-restore", days_ago=2, passed=True)
        _drill(conn, "pg-failover", days_ago=9, passed=True)
        _drill(conn, "pg-failover", days_ago=1, passed=False)  # a failed drill does not count as done
    status = _status()
    assert status["dr-restore"][0] == PASS and "2.0 days ago; max 8" in status["dr-restore"][1]
    assert status["pg-failover"] == (WARN, "last passed 2026-11-23 12:00 UTC (9.0 days ago; max 8)")
    with warehouse.begin() as conn:
        conn.execute(drill_results.delete())
    assert _status()["dr-restore"] == (WARN, "never run; first one due within the max age, which has passed")


@pytest.mark.postgres
def test_an_unreachable_warehouse_is_the_warehouse_checks_failure_not_this_ones(pg_warehouse, monkeypatch) -> None:
    from resilient_etl_devtools.sandbox.sinks import free_port

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({**pg_warehouse, "port": free_port()}))
    status = _status()
    assert {v[0] for v in status.values()} == {WARN} and all("see the warehouse check" in v[1] for v in status.values())
