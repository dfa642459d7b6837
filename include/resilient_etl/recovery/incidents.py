"""Acknowledge or resolve an incident as a person: the change, its message and who did it, recorded once for the CLI and the console."""

from __future__ import annotations

from dataclasses import dataclass

from resilient_etl.alerting import incidents as store
from resilient_etl.alerting.engine import Alerter
from resilient_etl.pipeline import overrides


@dataclass(frozen=True)
class IncidentChange:
    """An incident after a person's acknowledge or resolve, and the override that records who and why."""

    incident: store.Incident
    override: overrides.Override


def change_incident(alerter: Alerter, incident_id: int, action: str, *, note: str | None = None, by: str | None = None) -> IncidentChange:
    """
    Acknowledge (``ack``: escalation stops) or resolve (``resolve``: the recovery message goes out) an incident.

    :param alerter: the alerter over the warehouse holding the incident
    :param incident_id: the incident
    :param action: ``ack`` or ``resolve``
    :param note: the resolution note (sent with the recovery message) or why it was acknowledged
    :param by: who (default: ``$RESILIENT_ETL_USER``, else the login name)
    :raises LookupError: no such incident
    :raises ValueError: the incident is not in a state that allows ``action``
    """
    if action not in ("ack", "resolve"):
        raise ValueError(f"unknown incident action {action!r} (ack or resolve)")
    incident = alerter.acknowledge(incident_id) if action == "ack" else alerter.resolve(incident_id, note)
    with alerter.warehouse.begin() as conn:
        record = overrides.record(
            conn,
            "incident-ack" if action == "ack" else "incident-resolve",
            f"incident #{incident.id}",
            reason=note or "",
            by=by,
            details={"category": incident.category, "severity": incident.severity, "dag_id": incident.dag_id},
        )
    return IncidentChange(incident, record)
