"""The ``chaos_drill`` DAG's task: run one drill with ``resilient-etl drill run`` and return what it measured."""

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


class DrillOperator(BaseOperator):
    """
    Run scenario ``scenario`` against drill target ``target`` in a process of its own; fail when it missed a target.

    :param scenario: the scenario's name in ``config/drills.yaml``
    :param target: a drill target marked ``drillable``
    :param state_dir: where the local target keeps its state (default: a new temporary folder)
    """

    template_fields: Sequence[str] = ("scenario", "target")

    def __init__(self, *, scenario: str, target: str = "local", state_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.target = target
        self.state_dir = state_dir

    def execute(self, context: Any) -> dict[str, Any]:
        state_dir = Path(self.state_dir or tempfile.mkdtemp(prefix="chaos-drill-"))
        results = state_dir / "result.json"
        exe = str(Path(sys.executable).with_name("resilient-etl"))
        cmd = [exe, "drill", "run", self.scenario, "--target", self.target, "--state-dir", str(state_dir), "--record", str(results), "-o", "json"]
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
        summary = {k: result[k] for k in ("scenario", "passed", "detected_by", "time_to_detect_s", "rto_s", "rows_lost", "rows_duplicated", "error")}
        summary["checks"] = result["checks"]
        if not result["passed"]:
            raise AirflowException(
                f"drill {self.scenario} missed a target: "
                + "; ".join(f"{c['metric']} {c['measured']} (target {c['target']})" for c in result["checks"] if not c["pass"])
            )
        return summary
