"""
What the console shows, read from the warehouse: one function per page, each returning plain data
(the JSON API answers it as is; the templates render it).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, select

from resilient_etl.alerting import incidents as incident_store
from resilient_etl.config.models import ResilienceConfig
from resilient_etl.hooks.warehouse.schema import (
    ENRICHMENT_STATUSES,
    as_utc,
    breaker_events,
    drill_results,
    etl_checkpoints,
    incidents,
    manual_overrides,
    pipeline_runs,
    quarantine,
    run_enrichment,
    suppliers,
)
from resilient_etl.pipeline.load.statements import row_statuses
from resilient_etl.pipeline.overrides import NO_REASON

BREAKERS = ("postcodes_io", "companies_house")
ACTIVE = ("open", "acknowledged")


def _row(row: Any) -> dict[str, Any]:
    return {k: as_utc(v) if isinstance(v, dt.datetime) else v for k, v in row._mapping.items()}


def recent_runs(conn: Connection, limit: int = 30) -> list[dict[str, Any]]:
    """Return the last ``limit`` finished runs' reconciliation, oldest first (the chart reads left to right)."""
    cols = [pipeline_runs.c[c] for c in ("run_id", "dag_id", "rows_in", "rows_loaded", "rows_quarantined", "rows_pending", "status", "finished_at")]
    rows = conn.execute(select(*cols).order_by(pipeline_runs.c.finished_at.desc()).limit(limit)).all()
    return [_row(r) for r in reversed(rows)]


def breaker_history(conn: Connection, *, since: dt.datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Return the breakers' state changes since ``since``, oldest first."""
    q = select(breaker_events).where(breaker_events.c.at >= since).order_by(breaker_events.c.at.desc(), breaker_events.c.id.desc()).limit(limit)
    return [_row(r) for r in reversed(conn.execute(q).all())]


def state_before(conn: Connection, name: str, at: dt.datetime) -> str:
    """Return the state breaker ``name`` was in at ``at`` (its last change before then; closed if none)."""
    q = select(breaker_events.c.to_state).where(breaker_events.c.name == name, breaker_events.c.at < at)
    found = conn.execute(q.order_by(breaker_events.c.at.desc(), breaker_events.c.id.desc()).limit(1)).scalar()
    return found or "closed"


def list_incidents(
    conn: Connection, *, status: str | None = None, severity: str | None = None, category: str | None = None, limit: int = 200
) -> list[incident_store.Incident]:
    """
    Return incidents, newest first.

    :param status: ``active`` (open or acknowledged), ``open``, ``acknowledged``, ``resolved`` or None for all
    """
    q = select(incidents)
    if status == "active":
        q = q.where(incidents.c.status.in_(ACTIVE))
    elif status:
        q = q.where(incidents.c.status == status)
    if severity:
        q = q.where(incidents.c.severity == severity)
    if category:
        q = q.where(incidents.c.category == category)
    rows = conn.execute(q.order_by(incidents.c.last_seen_at.desc(), incidents.c.id.desc()).limit(limit)).all()
    return [incident_store.from_row(r) for r in rows]


def incident_counts(conn: Connection) -> dict[str, int]:
    """Return how many incidents are in each status."""
    return dict(conn.execute(select(incidents.c.status, func.count()).group_by(incidents.c.status)).all())


@dataclass(frozen=True)
class TimelineEntry:
    """One moment in an incident's life: opened, an escalation step (taken or due), acknowledged, resolved."""

    at: dt.datetime
    what: str
    who: str = ""
    done: bool = True


def incident_timeline(
    incident: incident_store.Incident, cfg: ResilienceConfig, people: list[dict[str, Any]], *, now: dt.datetime
) -> list[TimelineEntry]:
    """
    Return an incident's escalation timeline (a pure function of the incident, the routes, its overrides and the time).

    Steps already taken are ``done``; while it stays open, a step whose time has passed but that was not taken
    yet says so (DAG ``incident_escalation`` takes it on its next run), and later ones show when they fall due.

    :param people: the incident's ``incident-ack``/``incident-resolve`` overrides (who, when, note)
    :param now: the current time
    """
    steps = getattr(cfg.alerts.routes, incident.severity).escalation
    out = [TimelineEntry(incident.first_seen_at, f"opened ({incident.category}, {incident.severity})")]
    stopped = incident.acknowledged_at or incident.resolved_at
    for i, step in enumerate(steps):
        at = incident.first_seen_at + dt.timedelta(minutes=step.after_minutes)
        if i < incident.escalation_level:
            out.append(TimelineEntry(at, f"escalated to {step.tier} (step {i + 1})"))
        elif stopped is None and at <= now:
            out.append(TimelineEntry(at, f"escalation to {step.tier} (step {i + 1}) due, not taken yet (incident_escalation takes it)", done=False))
        elif stopped is None:
            out.append(TimelineEntry(at, f"escalates to {step.tier} (step {i + 1}) unless acknowledged", done=False))
    by = {p["action"]: p for p in people}
    for at, action, verb in ((incident.acknowledged_at, "incident-ack", "acknowledged"), (incident.resolved_at, "incident-resolve", "resolved")):
        if at is not None:
            who = by.get(action, {})
            note = who.get("reason", NO_REASON)
            out.append(TimelineEntry(at, verb + (f": {note}" if note != NO_REASON else ""), who.get("by_user", "")))
    return sorted(out, key=lambda e: e.at)


def incident_people(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    """Return the acknowledge/resolve overrides recorded for an incident, oldest first."""
    q = select(manual_overrides).where(
        manual_overrides.c.target == f"incident #{incident_id}", manual_overrides.c.action.in_(("incident-ack", "incident-resolve"))
    )
    return [_row(r) for r in conn.execute(q.order_by(manual_overrides.c.at)).all()]


def breaker_overrides(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Return the breakers' forced changes (who, when, why), newest first: their audit trail."""
    q = select(manual_overrides).where(manual_overrides.c.action.in_(("breaker-open", "breaker-reset")))
    return [_row(r) for r in conn.execute(q.order_by(manual_overrides.c.at.desc(), manual_overrides.c.id.desc()).limit(limit)).all()]


def quarantine_reasons(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    """Return a run's quarantined rows counted by stage and reason."""
    q = (
        select(quarantine.c.stage, quarantine.c.error_category, func.count().label("rows"))
        .where(quarantine.c.run_id == run_id)
        .group_by(quarantine.c.stage, quarantine.c.error_category)
        .order_by(func.count().desc())
    )
    return [dict(r._mapping) for r in conn.execute(q).all()]


def run_view(conn: Connection, run_id: str, *, started_at: dt.datetime | None, ended_at: dt.datetime | None) -> dict[str, Any]:
    """
    Return one run of ``company_enrichment``: its reconciliation, enrichment sources, quarantine reasons,
    breaker changes while it ran and, while it runs, its progress (staged rows by status, chunks committed).

    :param started_at: when the run started (from Airflow's metadata), None if unknown
    :param ended_at: when it ended, None while it runs
    """
    reconciliation = conn.execute(select(pipeline_runs).where(pipeline_runs.c.run_id == run_id)).first()
    sources: dict[str, dict[str, int]] = {}
    q = select(run_enrichment.c.kind, run_enrichment.c.source, func.count()).where(run_enrichment.c.run_id == run_id)
    for kind, source, n in conn.execute(q.group_by(run_enrichment.c.kind, run_enrichment.c.source)).all():
        sources.setdefault(kind, dict.fromkeys(ENRICHMENT_STATUSES, 0))[source] = n
    loaded = dict(
        conn.execute(
            select(suppliers.c.enrichment_status, func.count()).where(suppliers.c.run_id == run_id).group_by(suppliers.c.enrichment_status)
        ).all()
    )
    staged = row_statuses(conn, run_id=run_id)
    chunks = conn.execute(select(func.count(), func.coalesce(func.sum(etl_checkpoints.c.rows), 0)).where(etl_checkpoints.c.run_id == run_id)).one()
    changes: list[dict[str, Any]] = []
    if started_at is not None:
        window = breaker_events.c.at >= started_at
        if ended_at is not None:
            window = and_(window, breaker_events.c.at <= ended_at)
        changes = [_row(r) for r in conn.execute(select(breaker_events).where(window).order_by(breaker_events.c.at, breaker_events.c.id)).all()]
    total = sum(staged.values())
    done = sum(n for s, n in staged.items() if s in ("loaded", "pending", "quarantined"))
    return {
        "run_id": run_id,
        "reconciliation": _row(reconciliation) if reconciliation else None,
        "enrichment_sources": sources,
        "suppliers_by_status": {s: loaded.get(s, 0) for s in ENRICHMENT_STATUSES},
        "quarantine_reasons": quarantine_reasons(conn, run_id),
        "breaker_changes": changes,
        "progress": {"staged": staged, "rows_total": total, "rows_done": done, "chunks_committed": chunks[0], "rows_committed": int(chunks[1])},
    }


def latest_drills(conn: Connection) -> list[dict[str, Any]]:
    """Return the latest result of each drill scenario, by scenario name."""
    newest = select(drill_results.c.scenario, func.max(drill_results.c.id).label("id")).group_by(drill_results.c.scenario).subquery()
    cols = [c for c in drill_results.c if c.name != "result"]
    rows = conn.execute(select(*cols).join(newest, drill_results.c.id == newest.c.id).order_by(drill_results.c.scenario)).all()
    return [_row(r) for r in rows]


def jsonable(value: Any) -> Any:
    """Return ``value`` as JSON-ready data (datetimes as ISO 8601, dataclasses as dicts)."""
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, dt.date) else str(v)))
