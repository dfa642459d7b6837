"""An incident's escalation timeline: steps taken, steps overdue but not taken, steps to come, who acted."""

from __future__ import annotations

import datetime as dt

from _support.paths import CONFIG_FILE
from resilient_etl.alerting.incidents import Incident
from resilient_etl.config import load_config
from resilient_etl.exceptions import Severity
from resilient_etl_console.model import incident_timeline

T0 = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)  # SEV1 steps: primary at 0, secondary at 15, lead at 30 minutes


def _incident(**changes) -> Incident:
    base = dict(
        id=7, dag_id="company_enrichment", task_id="load", category="database_unavailable", severity=Severity.SEV1, status="open",
        escalation_level=1, occurrences=1, run_id="r", error_type="WarehouseUnavailableError", detail="down", first_seen_at=T0, last_seen_at=T0,
    )  # fmt: skip
    return Incident(**{**base, **changes})


def test_an_open_incident_shows_taken_overdue_and_coming_steps() -> None:
    cfg = load_config(CONFIG_FILE)
    entries = incident_timeline(_incident(), cfg, [], now=T0 + dt.timedelta(minutes=20))
    assert [(e.at - T0, e.done) for e in entries] == [
        (dt.timedelta(0), True),
        (dt.timedelta(0), True),
        (dt.timedelta(minutes=15), False),
        (dt.timedelta(minutes=30), False),
    ]
    assert entries[1].what == "escalated to primary (step 1)"
    assert "due, not taken yet" in entries[2].what and "secondary" in entries[2].what
    assert entries[3].what == "escalates to lead (step 3) unless acknowledged"


def test_an_acknowledged_then_resolved_incident_names_who_and_the_note_and_escalates_no_further() -> None:
    cfg = load_config(CONFIG_FILE)
    acked, resolved = T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=40)
    people = [
        {"action": "incident-ack", "by_user": "dora", "reason": "(no reason given)"},
        {"action": "incident-resolve", "by_user": "erin", "reason": "replica promoted"},
    ]
    incident = _incident(status="resolved", acknowledged_at=acked, resolved_at=resolved)
    entries = incident_timeline(incident, cfg, people, now=T0 + dt.timedelta(hours=2))
    assert [(e.what, e.who) for e in entries[-2:]] == [("acknowledged", "dora"), ("resolved: replica promoted", "erin")]
    assert not any("escalat" in e.what and not e.done for e in entries)
