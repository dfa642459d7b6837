"""The ``default_args`` every resilient-etl DAG shares, from the configuration."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from resilient_etl.notifications.alerts import task_callbacks
from resilient_etl.resilience.task_policy import task_retry_policy

if TYPE_CHECKING:
    from resilient_etl.config import ResilienceConfig


def default_args(cfg: ResilienceConfig) -> dict[str, Any]:
    """
    Return owner, retries with backoff, the taxonomy's retry policy, alerting callbacks and the warehouse.

    :param cfg: the configuration in force
    """
    return {
        "owner": cfg.dag.owner,
        "retries": cfg.dag.retries,
        "retry_delay": dt.timedelta(seconds=cfg.dag.retry_delay_seconds),
        "retry_exponential_backoff": cfg.dag.retry_exponential_backoff,
        "max_retry_delay": dt.timedelta(seconds=cfg.dag.max_retry_delay_seconds),
        "execution_timeout": dt.timedelta(minutes=cfg.dag.execution_timeout_minutes),
        # Airflow 3.3 retry policy from the error taxonomy: permanent errors fail at once, retries unused.
        "retry_policy": task_retry_policy(),
        # Classified alerts, incidents and soft deadlines (resilient_etl.notifications.alerts).
        **task_callbacks(),
        "warehouse_conn_id": cfg.warehouse.conn_id,
        "database_retry_policy": cfg.retry.policy("database"),
    }
