"""The ``chaos_drill`` and ``dr_drill`` DAGs' task: run one drill with ``resilient-etl drill run`` and return what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from resilient_etl.config import ENVIRONMENT_ENV
from resilient_etl.exceptions import DrDrillFailedError


class DrillOperator(BaseOperator):
    """
    Run scenario ``scenario`` against drill target ``target`` in a process of its own; fail when it missed a target.

    :param scenario: the scenario's name in ``config/drills.yaml``
    :param target: a drill target marked ``drillable``
    :param state_dir: where the local target keeps its state (default: a new temporary folder)
    :param rto_objective_seconds: fail when the measured RTO is over this (a DR objective), besides the drill's targets
    :param rpo_objective_seconds: fail when the data the backup lacked spans more than this, or any row stayed lost
    :param record_warehouse_conn_id: also keep the result in this warehouse's ``drill_results`` (what health reads)
    :param database: the local target's PostgreSQL database (default: the command's)
    :param redis_db: the local target's Redis database (default: the command's)
    """

    template_fields: Sequence[str] = ("scenario", "target")

    def __init__(
        self,
        *,
        scenario: str,
        target: str = "local",
        state_dir: str | None = None,
        rto_objective_seconds: float | None = None,
        rpo_objective_seconds: float | None = None,
        record_warehouse_conn_id: str | None = None,
        database: str | None = None,
        redis_db: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.target = target
        self.state_dir = state_dir
        self.rto_objective_seconds = rto_objective_seconds
        self.rpo_objective_seconds = rpo_objective_seconds
        self.record_warehouse_conn_id = record_warehouse_conn_id
        self.database = database
        self.redis_db = redis_db

    def execute(self, context: Any) -> dict[str, Any]:
        state_dir = Path(self.state_dir or tempfile.mkdtemp(prefix="chaos-drill-"))
        results = state_dir / "result.json"
        exe = str(Path(sys.executable).with_name("resilient-etl"))
        cmd = [exe, "drill", "run", self.scenario, "--target", self.target, "--state-dir", str(state_dir), "--record", str(results), "-o", "json"]
        cmd += ["--database", self.database] if self.database else []
        cmd += ["--redis-db", str(self.redis_db)] if self.redis_db is not None else []
        self.log.info("Running drill %s on target %s: %s", self.scenario, self.target, " ".join(cmd))
        # The drill's own Airflow (its pipeline runs) must not inherit this task's Airflow settings; the
        # environment name stays, so a drill triggered on production is refused by the command itself.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "RESILIENT_ETL"))}
        if ENVIRONMENT_ENV in os.environ:
            env[ENVIRONMENT_ENV] = os.environ[ENVIRONMENT_ENV]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        for line in proc.stderr.splitlines():
            if line.startswith(("[", "drill:", "results:", "skipped")):
                self.log.info("%s", line)
        if proc.returncode == 3:
            raise AirflowException(f"drill {self.scenario} refused: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
        if not results.exists():
            raise AirflowException(f"drill {self.scenario} produced no result (exit {proc.returncode}): {proc.stderr[-2000:]}")
        result = json.loads(results.read_text())[0]
        result["checks"] += self._objective_checks(result)
        result["passed"] = result["passed"] and all(c["pass"] for c in result["checks"])
        if self.record_warehouse_conn_id:
            self._record(result)
        summary = {k: result[k] for k in ("scenario", "passed", "detected_by", "time_to_detect_s", "rto_s", "rows_lost", "rows_duplicated", "error")}
        summary["checks"] = result["checks"]
        summary["measures"] = result.get("measures", {})
        if not result["passed"]:
            missed = [f"{c['metric']} {c['measured']} (target {c['target']})" for c in result["checks"] if not c["pass"]] or [str(result["error"])]
            raise DrDrillFailedError(f"drill {self.scenario} missed a target: {'; '.join(missed)}", scenario=self.scenario, missed=missed)
        return summary

    def _objective_checks(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        """Return the DR objectives as checks of the drill's result (RTO; RPO: the window the backup lacked, and rows lost)."""
        checks = []
        if self.rto_objective_seconds is not None:
            rto = result.get("rto_s")
            objective = self.rto_objective_seconds
            checks.append(
                {"metric": "RTO objective (s)", "target": f"≤ {objective:g}", "measured": rto, "pass": rto is not None and rto <= objective}
            )
        if self.rpo_objective_seconds is not None:
            window = result.get("measures", {}).get("rpo_window_s", 0.0)
            lost = result.get("rows_lost")
            checks.append(
                {
                    "metric": "RPO objective: work after the backup (s), rows lost",
                    "target": f"≤ {self.rpo_objective_seconds:g} s, 0 rows",
                    "measured": f"{window} s, {lost} rows",
                    "pass": window <= self.rpo_objective_seconds and lost == 0,
                }
            )
        return checks

    def _record(self, result: dict[str, Any]) -> None:
        from sqlalchemy import insert

        from resilient_etl.hooks.warehouse import WarehouseHook
        from resilient_etl.hooks.warehouse.schema import drill_results
        from resilient_etl_devtools.drills.runner import result_row

        warehouse = WarehouseHook(self.record_warehouse_conn_id or WarehouseHook.default_conn_name)
        warehouse.ensure_schema()
        with warehouse.begin() as conn:
            conn.execute(insert(drill_results).values(**result_row(result)))
        self.log.info("Drill %s recorded in %s.drill_results (passed: %s)", self.scenario, self.record_warehouse_conn_id, result["passed"])
