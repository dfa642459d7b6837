"""What an alert says: its title, links and fields, built from a classification (pure functions)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from resilient_etl.alerting.channels import AlertMessage

if TYPE_CHECKING:
    from resilient_etl.classification import Classification
    from resilient_etl.config.models import AlertsConfig

VERBS = {"failure": "failed", "retry": "up for retry", "escalation": "still failing", "deadline": "missed a deadline", "recovery": "recovered"}


def build_message(
    alerts: AlertsConfig,
    kind: str,
    classification: Classification,
    error: str,
    *,
    dag_id: str,
    task_id: str | None,
    run_id: str | None,
    log_url: str | None = None,
    **extra: Any,
) -> AlertMessage:
    """
    Return the message for one alert.

    :param alerts: the ``alerts`` section (UI and runbook addresses)
    :param kind: ``failure``, ``retry``, ``escalation``, ``deadline`` or ``recovery``
    :param error: the error's text, already redacted
    """
    what = f"{dag_id}.{task_id}" if task_id else dag_id
    return AlertMessage(
        kind=kind,
        title=f"{what} {VERBS[kind]}: {classification.category}",
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        category=classification.category,
        severity=classification.severity,
        transient=classification.transient,
        error_type=classification.error_type,
        error=error,
        cause=classification.cause,
        action=classification.action,
        log_url=log_url or ui_url(alerts.ui_base_url, dag_id, run_id, task_id),
        runbook_link=f"{alerts.runbook_url}#{classification.runbook}",
        **extra,
    )


def subject(dag_id: str, task_id: str | None, run_id: str | None) -> str:
    """Name what failed for a log line: ``dag.task`` for a task, ``dag run <run_id>`` for a whole run."""
    return f"{dag_id}.{task_id}" if task_id else f"{dag_id} run {run_id or '?'}"


def duration(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def ui_url(base: str, dag_id: str, run_id: str | None, task_id: str | None) -> str:
    url = f"{base.rstrip('/')}/dags/{dag_id}"
    if run_id:
        url += f"/runs/{quote(run_id)}"
        if task_id:
            url += f"/tasks/{task_id}"
    return url
