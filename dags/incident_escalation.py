"""
### incident_escalation

Walks the escalation timeline of every **open** (unacknowledged) incident: when an incident has
been open longer than a step's `after_minutes` (config `alerts.routes.<severity>.escalation`), the
person on call for that step's tier (`alerts.oncall`) is told, once. Acknowledge an incident to stop
its escalation, resolve it to send the recovery message:

    resilient-etl incidents list
    resilient-etl incidents ack <id>
    resilient-etl incidents resolve <id> [--note "..."]
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG

from resilient_etl.config import get_config
from resilient_etl.operators.defaults import dag_arguments
from resilient_etl.operators.incidents import EscalateIncidentsOperator

cfg = get_config()

with DAG(
    dag_id="incident_escalation",
    schedule=cfg.alerts.escalation_schedule,
    # a short timeout and one retry: the next scheduled run tries again anyway
    **dag_arguments(cfg, doc_md=__doc__, tags=["alerting", "incidents", "ops"], retries=1, execution_timeout=dt.timedelta(minutes=5)),
) as dag:
    EscalateIncidentsOperator(task_id="escalate")
