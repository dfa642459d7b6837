"""
Deadline Alerts for DAG runs (Airflow 3's replacement for SLAs): the reference, the callback and the
clean-up when a run finishes (ADR 0007).

* :class:`RunQueuedAt` is the reference: the run's ``queued_at``, as Airflow's ``DAGRUN_QUEUED_AT``,
  under its own name. Airflow 3.3.2's clear recalculates every ``DagRunQueuedAtDeadline`` and crashes
  on the stored interval (apache/airflow#70368: HTTP 500 on every clear); a custom reference is left
  alone by that path. The plugin registers it (``deadline_references``), which the scheduler and the
  API server need to decode it.
* :func:`dag_run_deadline_missed` is the ``AsyncCallback``: the triggerer imports it by dotted path, so
  it lives in the installed package. It runs on the triggerer's event loop; the blocking work
  (incident store, SMTP, webhook) runs in a thread. A run that had already finished is not alerted.
* :func:`drop_pending_deadlines` deletes a finished run's deadlines that have not fired (Airflow
  prunes them only after a success, never after a failure); the plugin's listener calls it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from airflow.listeners import hookimpl
from airflow.sdk.definitions.deadline import BaseDeadlineReference

from resilient_etl.exceptions import DeadlineMissedError, Severity

log = logging.getLogger(__name__)
CALLBACK_PATH = "resilient_etl.alerting.deadline.dag_run_deadline_missed"
FINISHED_STATES = frozenset({"success", "failed"})


class RunQueuedAt(BaseDeadlineReference):
    """The time the DAG run was queued (evaluated by the scheduler when the run is created)."""

    required_kwargs = frozenset({"dag_id", "run_id"})

    def _evaluate_with(self, *, session: Any, dag_id: str, run_id: str, **kwargs: Any) -> dt.datetime | None:
        from airflow.models import DagRun
        from sqlalchemy import select

        row = session.execute(select(DagRun.queued_at, DagRun.run_after).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).first()
        if row is None:
            return None
        return row.queued_at or row.run_after


def drop_pending_deadlines(session: Any, dagrun_id: int) -> int:
    """
    Delete the deadlines of a finished run that have not fired; return how many.

    Runs inside the scheduler's own transaction (the session that is finishing the run), so it
    commits with the run's new state and takes no second lock on SQLite.

    :param session: the SQLAlchemy session holding the run
    :param dagrun_id: the run's primary key
    """
    from airflow.models import Deadline
    from sqlalchemy import delete

    result = session.execute(delete(Deadline).where(Deadline.dagrun_id == dagrun_id, Deadline.missed.is_(False)))
    return result.rowcount or 0


def deadline_alert(context: dict[str, Any], *, deadline: str, severity: str, minutes: float) -> tuple[Any, str]:
    """
    Raise the ``deadline_missed`` alert for the run in ``context`` (the synchronous part).

    :param context: what Airflow passes: ``{"dag_run": {...}, "deadline": {...}}``
    :param deadline: the tier's name (``warn``, ``page``)
    :param severity: the tier's severity; a later, more severe tier re-alerts the same incident
    :param minutes: the tier's allowance, counted from when the run was queued
    :return: the incident and its outcome, or ``(None, "dropped")`` for a run that had already finished
    """
    from resilient_etl.alerting.engine import Alerter

    run = context.get("dag_run") or {}
    dag_id = run.get("dag_id", "?")
    run_id = run.get("dag_run_id") or run.get("run_id")
    if run.get("state") in FINISHED_STATES:
        log.info("Deadline %r of %s run %s dropped: the run had already finished (%s)", deadline, dag_id, run_id, run["state"])
        return None, "dropped"
    due = (context.get("deadline") or {}).get("deadline_time")
    exc = DeadlineMissedError(
        f"run {run_id} of {dag_id} is not finished {minutes:g} min after it was queued (deadline {deadline!r}"
        f"{f', due {due}' if due else ''}; state {run.get('state', '?')})",
        scope="dag_run",
        name=deadline,
        limit_seconds=minutes * 60,
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
    from airflow.sdk import AsyncCallback, DeadlineAlert

    return [
        DeadlineAlert(
            reference=RunQueuedAt(),
            interval=dt.timedelta(minutes=t.after_minutes),
            callback=AsyncCallback(CALLBACK_PATH, kwargs={"deadline": t.name, "severity": str(t.severity), "minutes": t.after_minutes}),
            name=t.name,
        )
        for t in tiers
    ]


class DeadlineCleanup:
    """Airflow listener (registered by the plugin): a finished run's unfired deadlines are dropped."""

    def _finished(self, dag_run: Any) -> None:
        from sqlalchemy.orm import object_session

        session = object_session(dag_run)
        if session is None:  # a detached run (not the scheduler's): nothing to do it in
            return
        dropped = drop_pending_deadlines(session, dag_run.id)
        if dropped:
            log.info("Run %s of %s finished (%s): %s pending deadline(s) dropped", dag_run.run_id, dag_run.dag_id, dag_run.state, dropped)

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        """Drop the unfired deadlines of a run that succeeded."""
        self._finished(dag_run)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        """Drop the unfired deadlines of a run that failed."""
        self._finished(dag_run)
