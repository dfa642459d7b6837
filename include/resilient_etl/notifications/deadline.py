"""
Deadline Alert callbacks for DAG runs (Airflow 3's replacement for SLAs).

The triggerer imports the callback by dotted path, so it lives in the installed provider package
(a function in a DAG file cannot be imported there). It runs on the triggerer's event loop, so the
blocking work (incident store, SMTP, webhook) runs in a thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from resilient_etl.errors import DeadlineMissedError, Severity

CALLBACK_PATH = "resilient_etl.notifications.deadline.dag_run_deadline_missed"


def deadline_alert(context: dict[str, Any], *, deadline: str, severity: str, minutes: float) -> tuple[Any, str]:
    """
    Raise the ``deadline_missed`` alert for the run in ``context`` (the synchronous part).

    :param context: what Airflow passes: ``{"dag_run": {...}, "deadline": {...}}``
    :param deadline: the tier's name (``warn``, ``page``)
    :param severity: the tier's severity; a later, more severe tier re-alerts the same incident
    :param minutes: the tier's allowance, counted from when the run was queued
    """
    from resilient_etl.notifications.alerts import Alerter

    run = context.get("dag_run") or {}
    dag_id = run.get("dag_id", "?")
    run_id = run.get("dag_run_id") or run.get("run_id")
    due = (context.get("deadline") or {}).get("deadline_time")
    exc = DeadlineMissedError(
        f"run {run_id} of {dag_id} is not finished {minutes:g} min after it was queued (deadline {deadline!r}"
        f"{f', due {due}' if due else ''}; state {run.get('state', '?')})",
        scope="dag_run", name=deadline, limit_seconds=minutes * 60,
    )
    return Alerter().failure(exc, kind="deadline", severity=Severity(severity), dag_id=dag_id, task_id=None, run_id=run_id)


async def dag_run_deadline_missed(*, deadline: str, severity: str, minutes: float, context: dict[str, Any] | None = None) -> str:
    """
    Alert that a DAG run missed a deadline tier (``AsyncCallback`` target, runs in the triggerer).

    :return: the incident outcome (``new``, ``repeat``, ``raised`` or ``unrecorded``), kept in the callback's result
    """
    incident, outcome = await asyncio.to_thread(deadline_alert, context or {}, deadline=deadline, severity=severity, minutes=minutes)
    return f"incident {incident.id if incident else '-'}: {outcome} at {dt.datetime.now(dt.UTC).isoformat()}"


def dag_run_deadlines(tiers: list[Any]) -> list[Any]:
    """
    Build the Deadline Alerts of a DAG from the configured tiers (``deadlines.dag_run``).

    :param tiers: :class:`resilient_etl.config.DeadlineTier` items
    """
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    return [
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=dt.timedelta(minutes=t.after_minutes),
            callback=AsyncCallback(CALLBACK_PATH, kwargs={"deadline": t.name, "severity": str(t.severity), "minutes": t.after_minutes}),
            name=t.name,
        )
        for t in tiers
    ]
