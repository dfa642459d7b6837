"""
Health checks with every component broken on purpose, against real parts: the sandbox APIs, SQLite
and PostgreSQL, an SMTP server, the breaker store and a real Airflow API server carrying the plugin.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from _support.alert_sinks import SlackSink, SmtpSink, free_port
from _support.api_server import api_server
from _support.stack import pipeline_stack
from resilient_etl.config import get_config
from resilient_etl.health import FAIL, PASS, WARN, check_health, run_checks
from resilient_etl.health.checks import default_checks
from resilient_etl_devtools.localenv import connection_env
from resilient_etl_devtools.sandbox.faults import FaultSpec

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.airflow_run


def _get(url: str, token: str | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read()), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, json.loads(body) if body.startswith(b"{") else {}, e.headers.get("Content-Type", "")


@pytest.fixture(scope="module")
def stack(sandbox, tmp_path_factory) -> Iterator[dict]:
    """Everything healthy: folders, warehouse, sandbox APIs, SMTP, and an Airflow API server with the plugin."""
    tmp = tmp_path_factory.mktemp("health")
    smtp, slack = SmtpSink().start(), SlackSink().start()
    port = free_port()
    sinks = {"AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp.connection()), "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(slack.connection())}
    try:
        with pipeline_stack(tmp, sandbox, airflow_port=port, extra_env=sinks) as stack:
            with api_server(tmp / "airflow", stack.env, reserialize=False, port=port) as server:
                yield {"dirs": stack.dirs, "smtp": smtp, "slack": slack, "url": server.url, "token": server.token, "sandbox": sandbox, "tmp": tmp}
    finally:
        smtp.stop()
        slack.stop()


@pytest.fixture
def healthy(stack) -> dict:
    stack["sandbox"].postcodes.registry.clear()
    stack["sandbox"].companies.registry.clear()
    if not stack["smtp"].controller:
        stack["smtp"].start()
    return stack


def _statuses(doc: dict) -> dict[str, str]:
    return {name: max((o["status"] for o in obs), key=[PASS, WARN, FAIL].index) for name, obs in doc["checks"].items()}


def test_one_document_for_every_component_and_the_cli_exit_code(healthy, capsys) -> None:
    from resilient_etl.cli import main

    started = time.perf_counter()
    code = main(["health"])
    elapsed = time.perf_counter() - started
    out = capsys.readouterr().out
    doc, _ = json.JSONDecoder().raw_decode(out[out.index('{\n  "status"') :])
    # only the API server runs here (no scheduler): Airflow reports its other components unhealthy
    assert (code, doc["status"]) == (1, WARN), {n: [x.get("output") for x in o] for n, o in doc["checks"].items() if o[0]["status"] == FAIL}
    assert {n for n, s in _statuses(doc).items() if s != PASS} == {"airflow:responseTime"}
    assert "unhealthy: scheduler" in doc["checks"]["airflow:responseTime"][0]["output"]
    assert set(doc["checks"]) == {
        "warehouse:responseTime",
        "folders:access",
        "folders:freeSpace",
        "postcodes_io:responseTime",
        "companies_house:responseTime",
        "companies_house:rateLimitHeadroom",
        "breakers:state",
        "shared_state:responseTime",
        "smtp:responseTime",
        "slack:connection",
        "airflow:responseTime",
        "dr_drills:age",
    }
    # a fresh setup: no DR drill is due yet, so it passes (one observation per scheduled drill)
    assert [o["componentId"] for o in doc["checks"]["dr_drills:age"]] == ["dr-restore", "pg-failover"]
    entry = doc["checks"]["warehouse:responseTime"][0]
    assert entry["componentType"] == "datastore" and entry["observedUnit"] == "ms" and entry["observedValue"] >= 0 and entry["time"]
    headroom = doc["checks"]["companies_house:rateLimitHeadroom"][0]
    assert 0 < headroom["observedValue"] <= 1 and headroom["observedUnit"] == "ratio"
    print(f"\nfull health check, every component answering: {elapsed:.2f} s")


def test_a_hanging_api_fails_at_its_timeout_and_the_report_still_comes(healthy) -> None:
    healthy["sandbox"].postcodes.registry.set("*", FaultSpec(hang_seconds=30))
    started = time.perf_counter()
    doc = check_health()
    elapsed = time.perf_counter() - started
    entry = doc["checks"]["postcodes_io:status"][0]
    assert entry["status"] == FAIL and "timeout" in entry["output"].lower()
    assert doc["status"] == FAIL and _statuses(doc)["companies_house:responseTime"] == PASS
    assert elapsed < get_config().health.timeout_seconds + 1.5  # bounded by the timeout, not the hang
    print(f"\nfull health check with postcodes.io hanging: {elapsed:.2f} s (timeout {get_config().health.timeout_seconds} s)")


def test_a_stopped_api_fails(healthy, monkeypatch) -> None:
    env = connection_env(postcodes_url=f"http://127.0.0.1:{free_port()}", companies_url="", api_key="", warehouse={})
    monkeypatch.setenv("AIRFLOW_CONN_POSTCODES_IO_DEFAULT", env["AIRFLOW_CONN_POSTCODES_IO_DEFAULT"])
    doc = check_health(checks={"postcodes_io": default_checks(get_config())["postcodes_io"]})
    assert doc["status"] == FAIL and "ConnectionError" in doc["checks"]["postcodes_io:status"][0]["output"]


def test_an_api_error_answer_fails_the_component(healthy) -> None:
    healthy["sandbox"].companies.registry.set("*", FaultSpec(status=503))
    doc = check_health(checks={"companies_house": default_checks(get_config())["companies_house"]})
    assert (
        doc["checks"]["companies_house:status"][0]["output"].startswith("ApiServerError: ")
        and "503" in doc["checks"]["companies_house:status"][0]["output"]
    )
    assert doc["status"] == FAIL


def test_unreachable_postgres_fails_and_reachable_postgres_passes(healthy, pg_warehouse, monkeypatch) -> None:
    check = {"warehouse": default_checks(get_config())["warehouse"]}
    assert check_health(checks=check)["status"] == PASS
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({**pg_warehouse, "port": free_port()}))
    doc = check_health(checks=check)
    assert doc["status"] == FAIL and "OperationalError" in doc["checks"]["warehouse:status"][0]["output"]


def test_a_read_only_or_missing_folder_fails(healthy) -> None:
    check = {"folders": default_checks(get_config())["folders"]}
    rejected = healthy["dirs"]["rejected"]
    subprocess.run(["chattr", "+i", str(rejected)], check=True)  # read-only even for root
    try:
        doc = check_health(checks=check)
    finally:
        subprocess.run(["chattr", "-i", str(rejected)], check=True)
    access = {o["componentId"]: o for o in doc["checks"]["folders:access"]}
    assert access["rejected"]["status"] == FAIL and "not writable" in access["rejected"]["output"]
    assert access["landing"]["status"] == PASS
    archive = healthy["dirs"]["archive"]
    archive.rename(archive.with_name("archive.moved"))
    try:
        missing = {o["componentId"]: o for o in check_health(checks=check)["checks"]["folders:access"]}["archive"]
        subprocess.run(["chattr", "+i", str(archive.parent)], check=True)  # now it could not be created either
        try:
            stuck = {o["componentId"]: o for o in check_health(checks=check)["checks"]["folders:access"]}["archive"]
        finally:
            subprocess.run(["chattr", "-i", str(archive.parent)], check=True)
    finally:
        archive.with_name("archive.moved").rename(archive)
    # a fresh setup: the pipeline creates the folder on first use
    assert missing["status"] == PASS and "created on first use" in missing["output"]
    assert stuck["status"] == FAIL and "does not exist and cannot be created" in stuck["output"]


@pytest.mark.parametrize(("limits", "status"), [({"warn": 10**9, "fail": 1}, WARN), ({"warn": 10**9, "fail": 10**9 - 1}, FAIL)])
def test_free_space_thresholds_from_config(healthy, monkeypatch, limits, status) -> None:
    monkeypatch.setenv("RESILIENT_ETL__HEALTH__FREE_SPACE_MB", json.dumps(limits))
    cfg = get_config()
    doc = check_health(cfg, checks={"folders": default_checks(cfg)["folders"]})
    assert {o["status"] for o in doc["checks"]["folders:freeSpace"]} == {status} and doc["status"] == status


def test_a_forced_open_breaker_warns(healthy) -> None:
    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.resilience.stores.sql import SqlStore

    hook = WarehouseHook()
    hook.ensure_schema()
    store = SqlStore(hook.engine)
    assert store.transition("companies_house", expected="closed", new="open", now=time.time())  # forced open, as a trip would
    try:
        doc = check_health(checks={"breakers": default_checks(get_config())["breakers"]})
    finally:
        store.transition("companies_house", expected="open", new="closed", now=time.time())
    states = {o["componentId"]: (o["status"], o["observedValue"]) for o in doc["checks"]["breakers:state"]}
    assert states["companies_house"] == (WARN, "open") and states["postcodes_io"] == (PASS, "closed")
    assert doc["status"] == WARN


def test_the_breakers_check_probes_a_breaker_whose_reset_timeout_passed(healthy) -> None:
    """Only a call closes a breaker: with no rows to enrich, the scheduled health check is that call."""
    from resilient_etl.hooks.shared_state import configured_store
    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.hooks.warehouse.schema import breaker_events

    cfg = get_config()
    hook = WarehouseHook()
    hook.ensure_schema()
    store = configured_store(cfg, hook)
    reset = cfg.breakers.policy("companies_house").reset_timeout_seconds
    check = {"breakers": default_checks(cfg)["breakers"]}
    assert store.transition("companies_house", expected="closed", new="open", now=time.time())  # just opened
    check_health(checks=check)
    assert store.read("companies_house").state == "open"  # still timing out: left alone
    assert store.transition("companies_house", expected="open", new="closed", now=time.time())
    assert store.transition("companies_house", expected="closed", new="open", now=time.time() - reset - 1)  # opened long ago
    doc = check_health(checks=check)
    assert doc["status"] == WARN and store.read("companies_house").state == "half-open"  # success_threshold 2: one more probe
    assert check_health(checks=check)["status"] == PASS and store.read("companies_house").state == "closed"
    with hook.begin() as conn:
        changes = [(r.from_state, r.to_state) for r in conn.execute(select(breaker_events).where(breaker_events.c.name == "companies_house"))]
    assert [to for _, to in changes][-2:] == ["half-open", "closed"]  # recorded as any probe is


def test_smtp_down_fails(healthy) -> None:
    healthy["smtp"].stop()
    doc = check_health(checks={"smtp": default_checks(get_config())["smtp"]})
    assert doc["status"] == FAIL and "ConnectionRefusedError" in doc["checks"]["smtp:status"][0]["output"]


def test_an_exception_inside_a_check_is_that_checks_failure() -> None:
    def broken() -> dict:
        raise ZeroDivisionError("bug in a check")

    def fine() -> dict:
        from resilient_etl.health import Observation

        return {"fine:ok": [Observation("fine", "component", PASS)]}

    checks = run_checks({"broken": broken, "fine": fine}, timeout=1)
    assert checks["broken:status"][0].status == FAIL and "ZeroDivisionError: bug in a check" in checks["broken:status"][0].output
    assert checks["fine:ok"][0].status == PASS


def test_plugin_endpoint_needs_auth_and_answers_200_or_503(healthy) -> None:
    url = f"{healthy['url']}/resilience/health"
    assert _get(url)[0] == 401
    status, doc, content_type = _get(url, healthy["token"])
    assert (status, doc["status"]) == (200, WARN), doc["checks"]  # warn (no scheduler here) still answers 200
    assert content_type.startswith("application/health+json")
    healthy["smtp"].stop()  # the API server's process checks the same SMTP server
    status, doc, _ = _get(url, healthy["token"])
    assert (status, doc["status"]) == (503, FAIL) and _statuses(doc)["smtp:status"] == FAIL


def test_pipeline_health_dag_alerts_on_a_change_and_recovers(healthy, airflow_db) -> None:
    """Two real runs of pipeline_health: the landing folder disappears (alert), then comes back (recovery)."""
    import datetime as dt

    from airflow.dag_processing.dagbag import BundleDagBag
    from sqlalchemy import select

    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.hooks.warehouse.schema import health_status, incidents

    dags = REPO / "dags"
    bag = BundleDagBag(dag_folder=str(dags / "pipeline_health.py"), bundle_path=dags)
    assert bag.import_errors == {}
    dag = bag.dags["pipeline_health"]
    smtp, slack = healthy["smtp"], healthy["slack"]
    smtp.messages.clear()
    slack.posts.clear()
    landing = healthy["dirs"]["landing"]
    subprocess.run(["chattr", "+i", str(landing)], check=True)  # read-only even for root
    try:
        first = dag.test(logical_date=dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC))
    finally:
        subprocess.run(["chattr", "-i", str(landing)], check=True)
    assert first.state == "success"  # the task reports; the alert carries the news
    folder_mails = [m for m in smtp.messages if "health:folders" in m.subject]
    assert [m.subject for m in folder_mails] == ["[SEV1] pipeline_health.health:folders failed: filesystem"]
    assert "landing" in folder_mails[0].body and "not writable" in folder_mails[0].body
    with WarehouseHook().begin() as conn:
        assert conn.execute(select(health_status.c.status).where(health_status.c.component == "folders")).scalar_one() == FAIL
    second = dag.test(logical_date=dt.datetime(2026, 11, 26, 10, 10, tzinfo=dt.UTC))
    assert second.state == "success"
    recovered = [m for m in smtp.messages if m.subject.startswith("[RESOLVED]") and "health:folders" in m.subject]
    assert len(recovered) == 1
    with WarehouseHook().begin() as conn:
        assert conn.execute(select(health_status.c.status).where(health_status.c.component == "folders")).scalar_one() == PASS
        folder_incident = conn.execute(select(incidents).where(incidents.c.task_id == "health:folders")).one()
    assert folder_incident.status == "resolved" and folder_incident.category == "filesystem"
    # the unchanged components alerted once at most (the first run), not again
    assert len([m for m in smtp.messages if "health:folders" in m.subject]) == 2


def test_unconfigured_alert_channels_warn_and_never_open_an_incident(healthy, monkeypatch, airflow_db) -> None:
    """A fresh setup without smtp_default / slack_alerts: warn "not configured", no incident, no ERROR."""
    import datetime as dt

    from airflow.dag_processing.dagbag import BundleDagBag
    from sqlalchemy import select

    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.hooks.warehouse.schema import incidents

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT")
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_ALERTS")
    doc = check_health(checks={k: v for k, v in default_checks(get_config()).items() if k in ("smtp", "slack")})
    smtp, slack = doc["checks"]["smtp:responseTime"][0], doc["checks"]["slack:connection"][0]
    assert (smtp["status"], slack["status"]) == (WARN, WARN) and smtp["configured"] is False is slack["configured"]
    assert smtp["output"].startswith("not configured (no connection smtp_default)")
    dags = REPO / "dags"
    dag = BundleDagBag(dag_folder=str(dags / "pipeline_health.py"), bundle_path=dags).dags["pipeline_health"]
    assert dag.test(logical_date=dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)).state == "success"
    with WarehouseHook().begin() as conn:
        opened = conn.execute(select(incidents.c.task_id).where(incidents.c.task_id.in_(["health:smtp", "health:slack"]))).all()
    assert opened == []
