"""
### pipeline_health

Checks every dependency of the pipeline on a schedule (`health.schedule`): the warehouse, the
landing/archive/rejected folders (access, free space), postcodes.io and Companies House (latency,
quota headroom), the circuit breakers and their shared store, the SMTP server and the Airflow API.
Each component's status is kept in `health_status`; a component that turns **warn** raises a SEV3
alert, one that turns **fail** an alert of its category's severity, and one that passes again
resolves its incident with a recovery message. The task returns the `application/health+json`
document (XCom); the same document comes from `resilient-etl health` and `GET /resilience/health`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from resilient_etl.config import get_config
from resilient_etl.operators.defaults import dag_arguments
from resilient_etl.operators.health import HealthCheckOperator

cfg = get_config()

with DAG(
    dag_id="pipeline_health",
    schedule=cfg.health.schedule,
    # a short timeout and one retry: the next scheduled run checks again anyway
    **dag_arguments(cfg, doc_md=__doc__, tags=["health", "monitoring", "ops"], retries=1, execution_timeout=dt.timedelta(minutes=5)),
) as dag:
    HealthCheckOperator(task_id="check")
