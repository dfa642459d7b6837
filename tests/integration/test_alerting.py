"""
Alert routing end to end with real receivers: a real SMTP server (aiosmtpd) and a Slack webhook
endpoint on loopback, incidents in a real warehouse (SQLite and PostgreSQL), a controllable clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import time
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from resilient_etl import exceptions as errors
from resilient_etl.alerting.deadline import dag_run_deadline_missed
from resilient_etl.alerting.engine import Alerter
from resilient_etl.alerting.timers import SoftDeadlineNotifier, stop_soft_deadline
from resilient_etl.classification import classify
from resilient_etl.cli import main as cli
from resilient_etl.config import RetryPolicy, get_config
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import incidents
from resilient_etl.pipeline import overrides

T0 = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)  # rotation turn 46: primary alice, secondary bob, lead carol


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += dt.timedelta(minutes=minutes)


@pytest.fixture
def alerter(sqlite_warehouse, alert_sinks):
    hook = WarehouseHook()
    hook.ensure_schema()
    clock = Clock()
    return Alerter(get_config(), warehouse=hook, clock=clock), clock, alert_sinks[0], alert_sinks[1]


def _failure(alerter: Alerter, exc: BaseException, task: str = "load", **kw):
    return alerter.failure(exc, dag_id="company_enrichment", task_id=task, run_id="manual__1", try_number=3, max_tries=3, **kw)


EXAMPLES = {
    "network": errors.ApiConnectionError("connection reset", service="postcodes_io"),
    "auth": errors.ApiAuthError("401 from Companies House", service="companies_house", status_code=401),
    "database_unavailable": errors.DatabaseConnectionLostError("warehouse connection lost: OperationalError (SQLSTATE 57P01)"),
    "rate_limit": errors.ApiRateLimitError("429", service="companies_house", status_code=429),
    "data_quality": errors.DataQualityError("file broke invalid_postcode", files={"a.csv": ["invalid_postcode"]}),
    "unknown": KeyError("surprise"),
}


@pytest.mark.parametrize("category", list(EXAMPLES))
def test_each_category_is_routed_by_its_severity(alerter, category: str) -> None:
    a, _, smtp, slack = alerter
    incident, outcome = _failure(a, EXAMPLES[category])
    assert outcome == "new" and incident.category == category
    severity = get_config().classification.entries()[category].severity
    route = getattr(get_config().alerts.routes, severity)
    assert bool(smtp.messages) == ("email" in route.channels)
    assert bool(slack.posts) == ("slack" in route.channels)
    if smtp.messages:
        mail = smtp.messages[0]
        assert mail.to == ["alice@example.com"]  # primary on call this week
        assert mail.subject.startswith(f"[{severity}] company_enrichment.load failed: {category}")
        for needle in ("manual__1", "3 of 3", category, type(EXAMPLES[category]).__name__, "Likely cause", "recovery.md#"):
            assert needle in mail.body
        assert "/dags/company_enrichment/runs/manual__1/tasks/load" in mail.body
    if slack.posts:
        text = slack.texts()[0]
        assert f"*{category}*" in text and "@alice" in text and "try 3 of 3" in text
        assert slack.posts[0][2] == "/" + slack.TOKEN  # the webhook path, never in the message
        assert slack.TOKEN not in text


def test_a_repeat_updates_the_incident_instead_of_alerting_again(alerter) -> None:
    a, clock, smtp, slack = alerter
    exc = errors.ApiAuthError("401", service="companies_house", status_code=401)
    outcomes = []
    for _ in range(3):
        outcomes.append(_failure(a, exc)[1])
        clock.advance(1)
    assert outcomes == ["new", "repeat", "repeat"]
    assert len(smtp.messages) == 1 and len(slack.posts) == 1
    with a.warehouse.begin() as conn:
        row = conn.execute(select(incidents)).one()
    assert row.occurrences == 3 and row.status == "open"
    # another task, or another category, is another incident
    assert _failure(a, exc, task="enrich_companies")[1] == "new"
    assert _failure(a, errors.ApiClientError("400", service="companies_house", status_code=400))[1] == "new"
    assert len(smtp.messages) == 3


def test_escalation_follows_the_timeline_until_acknowledged_then_recovery(alerter) -> None:
    a, clock, smtp, slack = alerter
    incident, _ = _failure(a, errors.DatabaseConnectionLostError("warehouse connection lost"))  # SEV1
    assert [m.to for m in smtp.messages] == [["alice@example.com"]]
    clock.advance(10)
    assert a.escalate() == []
    clock.advance(6)  # 16 min: secondary
    assert a.escalate() == [(incident.id, "secondary")]
    assert smtp.messages[-1].to == ["bob@example.com"] and "escalated to secondary" in smtp.messages[-1].body
    assert a.escalate() == []  # a step is taken once
    clock.advance(15)  # 31 min: lead
    assert a.escalate() == [(incident.id, "lead")]
    assert smtp.messages[-1].to == ["carol@example.com"]

    second, _ = _failure(a, errors.DiskFullError("database disk full"))  # SEV1, opened at 31 min
    a.acknowledge(second.id)
    clock.advance(20)
    assert a.escalate() == []  # acknowledged: no escalation
    sent = len(smtp.messages)
    resolved = a.resolve(incident.id, "server restarted")
    assert resolved.status == "resolved"
    assert len(smtp.messages) == sent + 1
    recovery = smtp.messages[-1]
    assert recovery.subject.startswith("[RESOLVED]") and "server restarted" in recovery.body
    assert set(recovery.to) == {"alice@example.com", "bob@example.com", "carol@example.com"}  # everyone who was paged
    assert ":white_check_mark: RESOLVED" in slack.texts()[-1]
    with pytest.raises(ValueError, match="already resolved"):
        a.resolve(incident.id)


def test_cli_lists_acknowledges_and_resolves(alerter, capsys) -> None:
    a, _, smtp, slack = alerter
    incident, _ = _failure(a, errors.ApiAuthError("401", service="companies_house", status_code=401))
    assert cli(["incidents", "list", "-o", "json"]) == 0
    (listed,) = [i for i in json.loads(capsys.readouterr().out) if i["id"] == incident.id]
    assert (listed["status"], listed["severity"], listed["category"], listed["task"]) == ("open", "SEV2", "auth", "company_enrichment.load")
    assert cli(["incidents", "list", "-o", "plain"]) == 0  # tab-separated, no header: for scripts
    assert f"{incident.id}\topen\tSEV2\tauth\tcompany_enrichment.load" in capsys.readouterr().out
    assert cli(["incidents", "ack", str(incident.id)]) == 0
    assert cli(["incidents", "ack", str(incident.id)]) == 2  # not open any more
    assert "is acknowledged, not open" in capsys.readouterr().err
    assert cli(["incidents", "resolve", str(incident.id), "--note", "key rotated", "--by", "carol"]) == 0
    assert "key rotated" in slack.texts()[-1]
    assert f"incident #{incident.id} resolved (by carol, override #" in capsys.readouterr().out
    assert cli(["incidents", "resolve", "999"]) == 2
    with a.warehouse.begin() as conn:  # who acknowledged and who resolved it, with the note, in the audit trail
        trail = [(o.action, o.target, o.by_user, o.reason) for o in overrides.history(conn)]
    assert trail[:2] == [
        ("incident-resolve", f"incident #{incident.id}", "carol", "key rotated"),
        ("incident-ack", f"incident #{incident.id}", overrides.current_user(), "(no reason given)"),
    ]


def test_retries_are_logged_and_notified_only_when_the_route_asks(alerter, logs) -> None:
    a, _, smtp, slack = alerter
    a.retry(errors.ApiServerError("503", service="postcodes_io", status_code=503), dag_id="d", task_id="t", run_id="r", try_number=1, max_tries=3)
    assert smtp.messages == [] and slack.posts == []  # SEV3: notify_retries false
    assert "Retry of d.t after try 1 of 3: upstream_5xx" in logs()
    a.retry(errors.WarehouseUnavailableError("down"), dag_id="d", task_id="t", run_id="r", try_number=1, max_tries=3)
    assert len(smtp.messages) == 1 and "up for retry" in smtp.messages[0].subject  # SEV1 asks for it


def test_no_secret_reaches_a_message_or_the_incident(alerter, api_connections) -> None:
    from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY

    a, _, smtp, slack = alerter
    exc = errors.ApiAuthError(f"refused key {DEFAULT_API_KEY} at https://user:hunter22@api.example/x", service="companies_house")
    _failure(a, exc)
    everything = smtp.messages[0].body + smtp.messages[0].subject + "".join(slack.texts())
    with a.warehouse.begin() as conn:
        everything += conn.execute(select(incidents.c.detail)).scalar_one()
    assert DEFAULT_API_KEY not in everything and "hunter22" not in everything
    assert "***" in everything


def test_smtp_down_still_posts_to_slack_and_logs_the_delivery_failure(alerter, logs) -> None:
    a, _, smtp, slack = alerter
    smtp.stop()
    _failure(a, errors.ApiAuthError("401", service="companies_house", status_code=401))
    assert len(slack.posts) == 1
    assert "not delivered by email" in logs()


def test_a_down_incident_store_still_alerts_and_records_the_incident_when_it_is_back(alerter, monkeypatch, tmp_path, capsys) -> None:
    a, clock, smtp, slack = alerter
    cfg = get_config()
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"alert_spool": tmp_path / "spool"})})
    monkeypatch.setenv("RESILIENT_ETL__PATHS__ALERT_SPOOL", str(tmp_path / "spool"))
    good_warehouse = os.environ["AIRFLOW_CONN_WAREHOUSE_DEFAULT"]
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "x"}))
    once = RetryPolicy(dependency="database", max_attempts=1, initial_wait_seconds=0.01, max_wait_seconds=0.01, max_elapsed_seconds=1)
    down = Alerter(cfg, warehouse=WarehouseHook(retry_policy=once), clock=clock)
    incident, outcome = down.failure(errors.WarehouseUnavailableError("warehouse down"), dag_id="company_enrichment", task_id="load", run_id="r")
    assert (incident, outcome) == (None, "unrecorded")
    assert len(smtp.messages) == 1 and len(slack.posts) == 1
    sent_at = clock.now
    clock.advance(42)

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", good_warehouse)  # the warehouse is back
    capsys.readouterr()
    assert cli(["incidents", "list", "-o", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["severity"], listed["category"], listed["task"]) == ("SEV1", "database_unavailable", "company_enrichment.load")
    assert dt.datetime.fromisoformat(listed["first_seen_at"]) == sent_at.replace(microsecond=0)
    assert list((tmp_path / "spool").glob("*.json")) == []
    assert len(smtp.messages) == 1 and len(slack.posts) == 1  # recording it sends nothing again
    with a.warehouse.begin() as conn:
        (row,) = conn.execute(select(incidents.c.first_seen_at, incidents.c.escalation_level)).all()
    assert row.first_seen_at.replace(tzinfo=dt.UTC) == sent_at and row.escalation_level == 1  # as if recorded then


def test_dag_run_deadline_tiers_warn_then_page(alerter, caplog) -> None:
    """The Deadline Alert callback, called as the triggerer calls it (context + kwargs)."""
    a, _, smtp, slack = alerter
    context = {
        "dag_run": {"dag_id": "company_enrichment", "dag_run_id": "scheduled__x", "state": "running"},
        "deadline": {"id": "1", "deadline_time": "2026-11-26T09:45:00Z"},
    }
    with caplog.at_level(logging.WARNING, logger="resilient_etl.alerting.engine"):
        warn = asyncio.run(dag_run_deadline_missed(deadline="warn", severity="SEV3", minutes=45, context=context))
    assert warn.startswith("incident 1: new")
    assert "Deadline company_enrichment run scheduled__x: deadline_missed, SEV3" in caplog.text
    assert smtp.messages == [] and "missed a deadline: deadline_missed" in slack.texts()[0]
    assert "45 min after it was queued" in slack.texts()[0]
    page = asyncio.run(dag_run_deadline_missed(deadline="page", severity="SEV1", minutes=90, context=context))
    assert page.startswith("incident 1: raised")  # same incident, now SEV1: e-mail and Slack
    assert len(smtp.messages) == 1 and smtp.messages[0].subject.startswith("[SEV1]")
    assert len(slack.posts) == 2


@pytest.mark.parametrize("state", ["failed", "success"])
def test_a_deadline_of_a_finished_run_alerts_nobody(alerter, state, caplog) -> None:
    """The scheduler can still hand over a deadline of a run that has just finished: it is dropped."""
    a, _, smtp, slack = alerter
    context = {
        "dag_run": {"dag_id": "company_enrichment", "dag_run_id": "manual__x", "state": state},
        "deadline": {"id": "1", "deadline_time": "2026-11-26T09:45:00Z"},
    }
    with caplog.at_level(logging.INFO, logger="resilient_etl.alerting.deadline"):
        result = asyncio.run(dag_run_deadline_missed(deadline="warn", severity="SEV3", minutes=45, context=context))
    assert result.startswith("incident -: dropped")
    assert smtp.messages == [] and slack.posts == []
    assert f"Deadline 'warn' of company_enrichment run manual__x dropped: the run had already finished ({state})" in caplog.text
    with a.warehouse.begin() as conn:
        assert conn.execute(select(incidents)).all() == []


class FakeTimer:
    """A soft-deadline timer the test fires itself: no waiting for minutes to pass."""

    made: list[FakeTimer] = []

    def __init__(self, seconds: float, function) -> None:
        self.seconds, self.function = seconds, function
        self.started = self.cancelled = False
        self.daemon, self.name = False, ""
        FakeTimer.made.append(self)

    def start(self) -> None:
        self.started = True

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        assert self.started and not self.cancelled, "a cancelled or unstarted timer does not fire"
        self.function()


def test_soft_task_deadline_alerts_while_the_task_keeps_running(alerter) -> None:
    _, _, smtp, slack = alerter
    FakeTimer.made.clear()
    ti = SimpleNamespace(dag_id="company_enrichment", task_id="load", run_id="manual__2", map_index=-1, log_url="http://x/log")
    SoftDeadlineNotifier(minutes={"load": 0.5}, timer=FakeTimer).notify({"ti": ti})
    (timer,) = FakeTimer.made
    assert timer.seconds == 30 and timer.started and timer.daemon and timer.name == "soft-deadline-load"
    assert slack.posts == []  # nothing before the deadline
    timer.fire()  # the deadline passes while the task still runs
    assert "company_enrichment.load missed a deadline: deadline_missed" in slack.texts()[0]
    assert "soft deadline of 0.5 min (it keeps running)" in slack.texts()[0]
    # a task that finishes in time cancels its timer: nothing is sent
    ti2 = SimpleNamespace(dag_id="company_enrichment", task_id="load", run_id="manual__3", map_index=-1, log_url="")
    SoftDeadlineNotifier(minutes={"load": 0.5}, timer=FakeTimer).notify({"ti": ti2})
    stop_soft_deadline({"ti": ti2})
    assert FakeTimer.made[-1].cancelled
    assert len(slack.posts) == 1


def test_the_default_soft_deadline_timer_is_a_real_daemon_timer_that_fires(alerter) -> None:
    """The production timer: a threading.Timer per task, which fires on its own (a short deadline here)."""
    _, _, smtp, slack = alerter
    ti = SimpleNamespace(dag_id="company_enrichment", task_id="validate", run_id="manual__4", map_index=-1, log_url="")
    SoftDeadlineNotifier(minutes={"validate": 0.001}).notify({"ti": ti})  # 60 ms
    deadline = time.monotonic() + 10
    while not slack.posts and time.monotonic() < deadline:  # waiting for another thread, not for time to pass
        time.sleep(0.02)
    assert "company_enrichment.validate missed a deadline" in slack.texts()[0]


def test_simultaneous_failures_of_one_key_open_one_incident(pg_warehouse) -> None:
    """Two callbacks recording the same failure at once (deadline tiers in the triggerer): one incident."""
    import threading

    from resilient_etl.alerting import incidents as store

    hook = WarehouseHook()
    hook.ensure_schema()
    c = classify(errors.DeadlineMissedError("late", scope="dag_run", name="warn", limit_seconds=1), get_config().classification.entries())
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def record() -> None:
        with hook.begin() as conn:
            barrier.wait()
            outcomes.append(store.record_failure(conn, dag_id="d", task_id=None, run_id="r", classification=c, detail="x", now=T0)[1])

    threads = [threading.Thread(target=record) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["new", "repeat", "repeat", "repeat"]
    with hook.begin() as conn:
        assert conn.execute(select(incidents.c.occurrences)).scalars().all() == [4]


def test_alerts_to_unconfigured_channels_log_one_warning_not_errors(sqlite_warehouse, monkeypatch, caplog) -> None:
    from resilient_etl.alerting import channels

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_ALERTS", raising=False)
    monkeypatch.setattr(channels, "_UNCONFIGURED_WARNED", set())
    hook = WarehouseHook()
    hook.ensure_schema()
    a = Alerter(get_config(), warehouse=hook, clock=Clock())
    with caplog.at_level(logging.INFO, logger="resilient_etl.alerting"):
        for task in ("load", "validate"):
            _failure(a, errors.ApiAuthError("401", service="companies_house", status_code=401), task=task)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "are not sent" in r.getMessage()]
    assert warnings == [
        "Alerts are not sent by email: no connection smtp_default is configured (`resilient-etl-dev sandbox --outbox` runs a local one)",
        "Alerts are not sent by slack: no connection slack_alerts is configured (`resilient-etl-dev sandbox --outbox` runs a local one)",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
