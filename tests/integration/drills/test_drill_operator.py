"""The chaos_drill DAG's task runs the drill command and turns its outcome into the task's."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException

from resilient_etl_devtools.drills.operator import DrillOperator


def test_a_refused_drill_fails_the_task_with_the_reason(tmp_path: Path) -> None:
    op = DrillOperator(task_id="run_drill", scenario="postcodes-down", target="production", state_dir=str(tmp_path))
    with pytest.raises(AirflowException, match=r"refused: .*targets\.production\.drillable is false"):
        op.execute({})


def test_an_unknown_scenario_fails_the_task_naming_the_catalogue(tmp_path: Path) -> None:
    op = DrillOperator(task_id="run_drill", scenario="meteor-strike", state_dir=str(tmp_path))
    with pytest.raises(AirflowException, match=r"no drill scenario 'meteor-strike' \(scenarios: postcodes-down, "):
        op.execute({})


def test_a_drill_triggered_on_production_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENT_ETL_ENV", "prod")  # the task strips the Airflow settings, not the environment's name
    op = DrillOperator(task_id="run_drill", scenario="postcodes-down", state_dir=str(tmp_path))
    with pytest.raises(AirflowException, match="RESILIENT_ETL_ENV is prod"):
        op.execute({})


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(300)
def test_a_drill_over_its_dr_objective_fails_as_dr_drill_failed_and_is_kept_in_the_warehouse(
    tmp_path: Path, sqlite_warehouse, redis_url, pg_server
) -> None:
    """A real drill (malformed-file, ~20 s) measured against an RTO objective it cannot meet."""
    import json
    import uuid

    import redis
    import sqlalchemy
    from sqlalchemy import select

    from resilient_etl.classification import classify
    from resilient_etl.config import get_config
    from resilient_etl.exceptions import Category, DrDrillFailedError
    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.hooks.warehouse.schema import drill_results

    op = DrillOperator(
        task_id="drill_malformed_file",
        scenario="malformed-file",
        state_dir=str(tmp_path / "drill"),
        rto_objective_seconds=0.5,
        rpo_objective_seconds=3600,
        record_warehouse_conn_id="warehouse_default",
        database=(database := f"retl_drill_{uuid.uuid4().hex[:8]}"),
        redis_db=int(redis_url.rsplit("/", 1)[1]),
    )
    redis.Redis.from_url(redis_url).flushdb()
    try:
        with pytest.raises(DrDrillFailedError) as missed:
            op.execute({})
    finally:
        with pg_server.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    assert missed.value.scenario == "malformed-file" and missed.value.missed[0].startswith("RTO objective (s) ")
    assert classify(missed.value, get_config().classification.entries()).category is Category.DR_DRILL_FAILED
    with WarehouseHook().begin() as conn:
        (kept,) = conn.execute(select(drill_results)).all()
    assert (kept.scenario, kept.passed) == ("malformed-file", False)
    checks = {c["metric"]: c for c in json.loads(kept.result)["checks"]}
    assert checks["RTO objective (s)"]["pass"] is False and checks["RTO (s)"]["pass"] is True  # the drill's own target was met
    assert checks["RPO objective: work after the backup (s), rows lost"]["pass"] is True
