"""
Incidents: one row per ongoing failure, keyed by (DAG, task, category), so a repeat updates the row
instead of alerting again; escalation and the on-call rotation as pure functions of config and time.

Statuses: ``open`` (alerting, escalating) -> ``acknowledged`` (someone is on it: no more escalation)
-> ``resolved`` (recovery message sent). A failure of the same key after resolution opens a new one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from resilient_etl.classification import Classification
from resilient_etl.exceptions import Severity
from resilient_etl.hooks.warehouse.schema import as_utc, incidents

if TYPE_CHECKING:
    from resilient_etl.config import EscalationStep, OnCallConfig

ACTIVE = ("open", "acknowledged")
_RANK = {s: i for i, s in enumerate(Severity)}  # SEV1 first: a lower rank is more severe
Outcome = Literal["new", "repeat", "raised"]


@dataclass(frozen=True)
class Incident:
    """An incidents row."""

    id: int
    dag_id: str
    task_id: str | None
    category: str
    severity: Severity
    status: str
    escalation_level: int
    occurrences: int
    run_id: str | None
    error_type: str | None
    detail: str | None
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    acknowledged_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None


@dataclass(frozen=True)
class Recipient:
    """Who is on call for a tier right now."""

    tier: str
    name: str
    email: str
    slack: str


def dedup_key(dag_id: str, task_id: str | None, category: str) -> str:
    """Return the key that makes repeats of one failure a single incident."""
    return f"{dag_id}|{task_id or '*'}|{category}"


def on_call(oncall: OnCallConfig, tier: str, at: dt.datetime) -> Recipient:
    """
    Return who holds ``tier`` at ``at`` (a pure function): the tier's list, one person per rotation.

    :param oncall: the rotation
    :param tier: ``primary``, ``secondary`` or ``lead``
    :param at: the moment (aware)
    """
    names: list[str] = getattr(oncall, tier)
    start = dt.datetime.combine(oncall.rotation_start, dt.time(), tzinfo=dt.UTC)
    turn = int((at - start).total_seconds() // (oncall.rotation_days * 86_400))
    name = names[turn % len(names)]
    person = oncall.people[name]
    return Recipient(tier=tier, name=name, email=person.email, slack=person.slack)


def due_steps(incident: Incident, steps: list[EscalationStep], now: dt.datetime) -> list[int]:
    """
    Return the indexes of escalation steps due and not yet taken (a pure function).

    ``escalation_level`` counts the steps taken; an acknowledged or resolved incident escalates no further.
    """
    if incident.status != "open":
        return []
    minutes = (now - as_utc(incident.first_seen_at)).total_seconds() / 60
    return [i for i, step in enumerate(steps) if i >= incident.escalation_level and minutes >= step.after_minutes]


def from_row(row: object) -> Incident:
    """Return an ``incidents`` row as an :class:`Incident`."""
    m = row._mapping  # type: ignore[attr-defined]
    return Incident(
        id=m["id"],
        dag_id=m["dag_id"],
        task_id=m["task_id"],
        category=m["category"],
        severity=Severity(m["severity"]),
        status=m["status"],
        escalation_level=m["escalation_level"],
        occurrences=m["occurrences"],
        run_id=m["run_id"],
        error_type=m["error_type"],
        detail=m["detail"],
        first_seen_at=as_utc(m["first_seen_at"]),
        last_seen_at=as_utc(m["last_seen_at"]),
        acknowledged_at=m["acknowledged_at"] and as_utc(m["acknowledged_at"]),
        resolved_at=m["resolved_at"] and as_utc(m["resolved_at"]),
    )


def record_failure(
    conn: Connection, *, dag_id: str, task_id: str | None, run_id: str | None, classification: Classification, detail: str, now: dt.datetime
) -> tuple[Incident, Outcome]:
    """
    Open an incident for a failure, or update the active one with the same key.

    :param detail: the error's text, already redacted

    :return: the incident and what happened: ``new``; ``repeat`` (no new alert); ``raised`` (a repeat
        of higher severity than the incident had, for example a deadline's page tier after its warn
        tier: the incident takes the new severity and alerts again)
    """
    key = dedup_key(dag_id, task_id, classification.category)
    query = select(incidents).where(incidents.c.dedup_key == key, incidents.c.status.in_(ACTIVE)).order_by(incidents.c.id.desc()).limit(1)
    row = conn.execute(query).first()
    if row is None:
        try:
            with conn.begin_nested():
                new_id = conn.execute(
                    insert(incidents).values(
                        dedup_key=key,
                        dag_id=dag_id,
                        task_id=task_id,
                        category=classification.category,
                        severity=classification.severity,
                        escalation_level=0,
                        status="open",
                        occurrences=1,
                        run_id=run_id,
                        error_type=classification.error_type,
                        detail=detail,
                        first_seen_at=now,
                        last_seen_at=now,
                    )
                ).inserted_primary_key[0]
            return get(conn, new_id), "new"
        except IntegrityError:  # another callback opened it a moment ago (unique active key): a repeat
            row = conn.execute(query).one()
    current = from_row(row)
    raised = _RANK[classification.severity] < _RANK[current.severity]
    values: dict[str, object] = {
        "occurrences": incidents.c.occurrences + 1,
        "last_seen_at": now,
        "run_id": run_id,
        "error_type": classification.error_type,
        "detail": detail,
    }
    if raised:  # a new, more urgent alert: escalation restarts for the new severity
        values.update(severity=classification.severity, status="open", escalation_level=0, first_seen_at=now, acknowledged_at=None)
    conn.execute(update(incidents).where(incidents.c.id == current.id).values(**values))
    return get(conn, current.id), "raised" if raised else "repeat"


def get(conn: Connection, incident_id: int) -> Incident:
    """Return one incident; :class:`LookupError` when it does not exist."""
    row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
    if row is None:
        raise LookupError(f"no incident #{incident_id}")
    return from_row(row)


def active(conn: Connection, *, dag_id: str | None = None, task_id: str | None = None) -> list[Incident]:
    """Return open and acknowledged incidents, oldest first, optionally of one DAG / task."""
    query = select(incidents).where(incidents.c.status.in_(ACTIVE)).order_by(incidents.c.id)
    if dag_id is not None:
        query = query.where(incidents.c.dag_id == dag_id)
    if task_id is not None:
        query = query.where(incidents.c.task_id == task_id)
    return [from_row(r) for r in conn.execute(query)]


def set_escalation_level(conn: Connection, incident_id: int, level: int) -> None:
    """Record that the first ``level`` escalation steps were taken."""
    conn.execute(update(incidents).where(incidents.c.id == incident_id).values(escalation_level=level))


def acknowledge(conn: Connection, incident_id: int, now: dt.datetime) -> Incident:
    """Acknowledge an open incident: escalation stops. Raises :class:`ValueError` unless it is open."""
    incident = get(conn, incident_id)
    if incident.status != "open":
        raise ValueError(f"incident #{incident_id} is {incident.status}, not open")
    conn.execute(update(incidents).where(incidents.c.id == incident_id).values(status="acknowledged", acknowledged_at=now))
    return get(conn, incident_id)


def resolve(conn: Connection, incident_id: int, now: dt.datetime) -> Incident:
    """Resolve an active incident. Raises :class:`ValueError` when it is already resolved."""
    incident = get(conn, incident_id)
    if incident.status not in ACTIVE:
        raise ValueError(f"incident #{incident_id} is already {incident.status}")
    conn.execute(update(incidents).where(incidents.c.id == incident_id).values(status="resolved", resolved_at=now))
    return get(conn, incident_id)
