"""
The alert engine: classify a failure, record it as an incident, tell the right people once.

:class:`Alerter` is used by the task callbacks (:mod:`.notifiers`), the soft-deadline timers
(:mod:`.timers`), the Deadline Alert callback (:mod:`.deadline`), the escalation task and the CLI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from resilient_etl.alerting import incidents as store
from resilient_etl.alerting.channels import AlertMessage, connection_secrets, deliver, redact
from resilient_etl.alerting.messages import build_message, duration, subject
from resilient_etl.alerting.spool import AlertSpool
from resilient_etl.classification import Classification, classify
from resilient_etl.exceptions import Category, Severity

if TYPE_CHECKING:
    from resilient_etl.config.models import ResilienceConfig
    from resilient_etl.hooks.warehouse import WarehouseHook

log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _task_fields(
    dag_id: str, task_id: str | None, run_id: str | None, log_url: str | None, try_number: int | None, max_tries: int | None
) -> dict[str, Any]:
    """The message fields that say which task (and which try of it) an alert is about."""
    return {"dag_id": dag_id, "task_id": task_id, "run_id": run_id, "log_url": log_url, "try_number": try_number, "max_tries": max_tries}


class Alerter:
    """
    Turn failures into incidents and messages, following the configured matrix and routes.

    :param config: the configuration (default: the one in force)
    :param warehouse: where incidents live (default: the configured warehouse)
    :param clock: the current time (tests drive escalation with their own)
    """

    def __init__(self, config: ResilienceConfig | None = None, *, warehouse: WarehouseHook | None = None, clock: Clock = _utcnow) -> None:
        if config is None:
            from resilient_etl.config import get_config

            config = get_config()
        self.config = config
        self._warehouse = warehouse
        self.clock = clock

    @property
    def warehouse(self) -> WarehouseHook:
        if self._warehouse is None:
            from resilient_etl.hooks.warehouse import WarehouseHook

            self._warehouse = WarehouseHook(warehouse_conn_id=self.config.warehouse.conn_id)
        return self._warehouse

    def classify(self, exc: BaseException) -> Classification:
        """Classify ``exc`` with the configured matrix."""
        return classify(exc, self.config.classification.entries())

    @cached_property
    def secrets(self) -> list[str]:
        """The passwords and keys of the pipeline's connections, read once per alerter."""
        c = self.config
        return connection_secrets(
            [
                c.apis.postcodes_io.conn_id,
                c.apis.companies_house.conn_id,
                c.warehouse.conn_id,
                c.shared_state.redis_conn_id,
                c.alerts.email_conn_id,
                c.alerts.slack_conn_id,
            ]
        )

    def _incident_message(self, kind: str, incident: store.Incident, **extra: Any) -> AlertMessage:
        """Build the message about a recorded incident (escalation, recovery)."""
        return build_message(
            self.config.alerts,
            kind,
            self._recorded(incident),
            incident.detail or "",
            dag_id=incident.dag_id,
            task_id=incident.task_id,
            run_id=incident.run_id,
            incident_id=incident.id,
            occurrences=incident.occurrences,
            **extra,
        )

    def send(self, message: AlertMessage, severity: Severity, tiers: list[str]) -> dict[str, Any]:
        """Send ``message`` on the severity's channels to the people on call for ``tiers``."""
        route = getattr(self.config.alerts.routes, severity)
        now = self.clock()
        people = [store.on_call(self.config.alerts.oncall, tier, now) for tier in tiers]
        if people:
            message = dataclasses.replace(message, recipient=people[-1])
        results = deliver(
            message,
            channels=route.channels,
            emails=sorted({p.email for p in people}),
            email_conn_id=self.config.alerts.email_conn_id,
            slack_conn_id=self.config.alerts.slack_conn_id,
            from_email=self.config.alerts.from_email,
            secrets=self.secrets,
        )
        log.info("Alert %r (%s) to %s: %s", message.title, severity, [p.name for p in people] or "nobody", results or "recorded only")
        return results

    def failure(
        self,
        exc: BaseException,
        *,
        dag_id: str,
        task_id: str | None,
        run_id: str | None,
        kind: str = "failure",
        severity: Severity | None = None,
        log_url: str | None = None,
        try_number: int | None = None,
        max_tries: int | None = None,
    ) -> tuple[store.Incident | None, str]:
        """
        Route a failure: record the incident, alert unless it is a repeat.

        When the incident store (the warehouse) is itself down, the alert is sent without dedup:
        a database outage must still reach someone.

        :param severity: override the matrix's severity (deadline tiers)
        :return: the incident (None when the store was unreachable) and ``new``, ``repeat``,
            ``raised`` or ``unrecorded``
        """
        c = self.classify(exc)
        if severity is not None:
            c = Classification(c.category, severity, c.transient, c.action, c.cause, c.runbook, c.error_type)
        now = self.clock()
        detail = redact(str(exc), self.secrets)[:4000]
        first = [s.tier for s in getattr(self.config.alerts.routes, c.severity).escalation if s.after_minutes <= 0]
        incident: store.Incident | None
        try:
            self.record_spooled()
        except Exception as spool_error:  # boundary: an earlier alert must not stop this one; it stays spooled
            log.warning("Spooled alerts not recorded yet (%s): kept for the next try", type(spool_error).__name__)
        try:
            incident, outcome = self._record(
                dag_id=dag_id, task_id=task_id, run_id=run_id, classification=c, detail=detail, now=now, first_steps=len(first)
            )
        except Exception as record_error:  # boundary: the store being down must not swallow the alert
            spooled = self.spool.put(dag_id=dag_id, task_id=task_id, run_id=run_id, classification=c, detail=detail, now=now, first_steps=len(first))
            log.error(
                "Incident store unavailable (%s): alerting without dedup; the incident is recorded when it is back (%s)",
                type(record_error).__name__,
                spooled.name,
            )
            incident, outcome = None, "unrecorded"
        log.warning(
            "%s %s: %s, %s (%s) -> incident %s: %s",
            kind.capitalize(),
            subject(dag_id, task_id, run_id),
            c.category,
            c.severity,
            "transient" if c.transient else "permanent",
            incident.id if incident else "-",
            outcome,
        )
        if outcome == "repeat":
            return incident, outcome
        task = _task_fields(dag_id, task_id, run_id, log_url, try_number, max_tries)
        occurrence = {"incident_id": incident.id if incident else None, "occurrences": incident.occurrences if incident else 1}
        self.send(build_message(self.config.alerts, kind, c, detail, **task, **occurrence), c.severity, first)
        return incident, outcome

    def _record(
        self, *, dag_id: str, task_id: str | None, run_id: str | None, classification: Classification, detail: str, now: dt.datetime, first_steps: int
    ) -> tuple[store.Incident, str]:
        with self.warehouse.begin() as conn:
            incident, outcome = store.record_failure(
                conn, dag_id=dag_id, task_id=task_id, run_id=run_id, classification=classification, detail=detail, now=now
            )
            if outcome != "repeat" and first_steps:  # the first steps are taken by this alert
                store.set_escalation_level(conn, incident.id, first_steps)
        return incident, outcome

    @cached_property
    def spool(self) -> AlertSpool:
        """Alerts sent while the incident store was down (``paths.alert_spool``)."""
        return AlertSpool(self.config.paths.spool)

    def record_spooled(self) -> list[tuple[int, str]]:
        """
        Record as incidents, with their original times, the alerts sent while the store was down.

        Their messages went out then; recording them sends nothing. Each is removed from the spool
        once its transaction commits, so a store failing half way leaves the rest for next time.

        :return: ``(incident id, outcome)`` per recorded alert
        """
        recorded = []
        for path, entry in self.spool.entries():
            incident, outcome = self._record(**entry)
            path.unlink()
            log.warning(
                "Recorded incident %s (%s) for the alert sent at %s while the incident store was down", incident.id, outcome, entry["now"].isoformat()
            )
            recorded.append((incident.id, outcome))
        return recorded

    def retry(
        self, exc: BaseException, *, dag_id: str, task_id: str, run_id: str, try_number: int, max_tries: int, log_url: str | None = None
    ) -> Classification:
        """Log a classified retry; alert the first tier only when the severity's route asks for it."""
        c = self.classify(exc)
        route = getattr(self.config.alerts.routes, c.severity)
        log.warning(
            "Retry of %s.%s after try %s of %s: %s, %s (%s): %s",
            dag_id,
            task_id,
            try_number,
            max_tries,
            c.category,
            c.severity,
            "transient" if c.transient else "permanent",
            c.action,
        )
        if route.notify_retries:
            first = [s.tier for s in route.escalation if s.after_minutes <= 0]
            task = _task_fields(dag_id, task_id, run_id, log_url, try_number, max_tries)
            self.send(build_message(self.config.alerts, "retry", c, str(exc), **task), c.severity, first)
        return c

    def escalate(self) -> list[tuple[int, str]]:
        """
        Take every escalation step now due on open incidents; return ``(incident id, tier)`` notified.

        Run on a schedule (DAG ``incident_escalation``); the steps are a pure function of the
        incident, the severity's route and the clock (:func:`resilient_etl.alerting.incidents.due_steps`).
        """
        now = self.clock()
        taken: list[tuple[int, str]] = []
        self.record_spooled()
        with self.warehouse.begin() as conn:
            open_incidents = [i for i in store.active(conn) if i.status == "open"]
        for incident in open_incidents:
            steps = getattr(self.config.alerts.routes, incident.severity).escalation
            due = store.due_steps(incident, steps, now)
            if not due:
                continue
            tiers = [steps[i].tier for i in due]
            message = self._incident_message("escalation", incident, escalation=", ".join(tiers))
            self.send(message, incident.severity, tiers)
            with self.warehouse.begin() as conn:
                store.set_escalation_level(conn, incident.id, due[-1] + 1)
            taken += [(incident.id, t) for t in tiers]
        return taken

    def acknowledge(self, incident_id: int) -> store.Incident:
        """Acknowledge an incident: its escalation stops."""
        with self.warehouse.begin() as conn:
            incident = store.acknowledge(conn, incident_id, self.clock())
        log.info("Incident #%s acknowledged", incident_id)
        return incident

    def resolve(self, incident_id: int, resolution: str | None = None) -> store.Incident:
        """Resolve an incident and send the recovery message to its severity's channels."""
        with self.warehouse.begin() as conn:
            incident = store.resolve(conn, incident_id, self.clock())
        self._recovered(incident, resolution)
        return incident

    def recover_task(self, *, dag_id: str, task_id: str | None, run_id: str | None) -> list[store.Incident]:
        """Resolve the active incidents of a task that just succeeded (recovery messages sent)."""
        now = self.clock()
        with self.warehouse.begin() as conn:
            resolved = [store.resolve(conn, i.id, now) for i in store.active(conn, dag_id=dag_id, task_id=task_id) if i.task_id == task_id]
        for incident in resolved:
            self._recovered(incident, f"{task_id or dag_id} succeeded in run {run_id}")
        return resolved

    def _recorded(self, incident: store.Incident) -> Classification:
        """The classification an incident was opened with (its transience is not stored: reported permanent)."""
        entry = self.config.classification.entries()[incident.category]
        return Classification(
            Category(incident.category), incident.severity, False, entry.action, entry.cause, entry.runbook, incident.error_type or "-"
        )

    def _recovered(self, incident: store.Incident, resolution: str | None) -> None:
        open_for = (incident.resolved_at or self.clock()) - incident.first_seen_at
        message = self._incident_message("recovery", incident, resolution=resolution, open_for=duration(open_for))
        steps = getattr(self.config.alerts.routes, incident.severity).escalation
        self.send(message, incident.severity, [s.tier for s in steps[: max(incident.escalation_level, 1)]])
