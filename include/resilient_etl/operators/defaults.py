"""What every resilient-etl DAG shares, from the configuration: DAG arguments and ``default_args``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from resilient_etl.alerting.notifiers import task_callbacks
from resilient_etl.operators.retry_policy import task_retry_policy

if TYPE_CHECKING:
    from resilient_etl.config import ResilienceConfig

START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


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
        # Classified alerts, incidents and soft deadlines (resilient_etl.alerting.notifiers, resilient_etl.alerting.timers).
        **task_callbacks(),
        "warehouse_conn_id": cfg.warehouse.conn_id,
        "database_retry_policy": cfg.retry.policy("database"),
    }


def dag_arguments(cfg: ResilienceConfig, *, doc_md: str | None, tags: Sequence[str] = (), **default_overrides: Any) -> dict[str, Any]:
    """
    Return the ``DAG(...)`` arguments every pipeline DAG shares: no catchup, one run at a time, the
    configured tags plus ``tags``, and :func:`default_args` with ``default_overrides`` applied.

    :param cfg: the configuration in force
    :param doc_md: the DAG's documentation (its module docstring)
    :param tags: tags beyond the configured ones
    :param default_overrides: ``default_args`` entries this DAG sets differently
    """
    return {
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "doc_md": doc_md,
        "tags": [*cfg.dag.tags, *tags],
        "default_args": {**default_args(cfg), **default_overrides},
    }
