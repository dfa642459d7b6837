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
