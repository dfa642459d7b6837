"""
The resilience console in a real browser (Debian's headless Chromium driven by Playwright) against a real
``airflow api-server`` carrying the plugin, over a warehouse holding 100 runs and 1,000 incidents.

Screenshots go to build/screenshots/ (CI artefacts); the overview's load times to build/screenshots/timing.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from _support.api_server import api_server, get_token
from _support.console import SCREENSHOTS, Seeded, browser, login, screenshot, seed
from _support.stack import pipeline_stack
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import incidents, manual_overrides
from resilient_etl.pipeline.backlog import backlog_size

pytestmark = pytest.mark.airflow_run
USERS = {"admin": ("admin", "admin"), "viewer": ("viewer", "viewer")}


@pytest.fixture(scope="module")
def console(sandbox, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """An API server with the plugin over a seeded SQLite warehouse; admin (edit) and viewer (read only)."""
    from _support.alert_sinks import free_port

    tmp = tmp_path_factory.mktemp("console")
    port = free_port()
    with pipeline_stack(tmp, sandbox, airflow_port=port) as stack:
        rejected = stack.dirs["rejected"]
        (rejected / "bad_header.csv").write_text("id;name\n1;x\n")
        (rejected / "bad_header.csv.reason.txt").write_text("header does not match: expected supplier_id,company_number,...\n")
        warehouse = WarehouseHook("warehouse_default")
        seeded = seed(warehouse, runs=100, incident_count=1000)
        with api_server(tmp / "airflow", stack.env, port=port, users=USERS) as server:
            # a real run of company_enrichment with the seeded run's id: its DAG-run page carries the Resilience tab
            status, body = server.request("POST", "/api/v2/dags/company_enrichment/dagRuns", {"dag_run_id": seeded.detail_run, "logical_date": None})
            assert status == 200, body
            yield {"server": server, "seeded": seeded, "warehouse": warehouse, "env": stack.env, "dirs": stack.dirs}


def _call(url: str, method: str = "GET", *, token: str | None = None, cookie: str | None = None, data: bytes | None = None, headers=None) -> int:
    request = urllib.request.Request(url, method=method, data=data, headers=dict(headers or {}))
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if cookie:
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _routes(seeded: Seeded) -> list[tuple[str, str]]:
    from resilient_etl_console.app import route_table

    fill = {"{dag_id}": "company_enrichment", "{run_id}": seeded.detail_run, "{incident_id}": str(seeded.open_ids[-1])}
    fill |= {"{action}": "ack", "{name}": "postcodes_io"}
    out = []
    for route in route_table():
        if route["access"].startswith("public"):
            continue
        path = route["path"].replace("/rejected/{name}", "/rejected/bad_header.csv")
        for k, v in fill.items():
            path = path.replace(k, urllib.request.quote(v, safe=""))
        out += [(m, path) for m in route["methods"].split(",")]
    return out


def test_every_route_is_401_without_a_token_and_403_for_a_viewer_acting(console) -> None:
    server, seeded = console["server"], console["seeded"]
    viewer = get_token(server.url, "viewer", "viewer")
    routes = _routes(seeded)
    assert len(routes) >= 20
    for method, path in routes:
        assert _call(server.url + path, method, data=b"" if method == "POST" else None) == 401, (method, path)
        assert _call(server.url + path, method, token="not-a-jwt", data=b"" if method == "POST" else None) == 403, (method, path)
        expected = 403 if method == "POST" else 200
        assert _call(server.url + path, method, token=viewer, data=b"" if method == "POST" else None) == expected, (method, path)


def test_forms_refuse_a_cross_site_post(console) -> None:
    server, seeded = console["server"], console["seeded"]
    token = server.token
    target = f"{server.url}/resilience/ui/incidents/{seeded.open_ids[-1]}/ack"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # the UI's session cookie alone, no CSRF token: what a cross-site form would send
    assert _call(target, "POST", cookie=f"_token={token}", data=b"csrf_token=", headers=form) == 403
    # a matching double-submit pair from another origin
    pair = "resilience_csrf=abc; _token=" + token
    assert _call(target, "POST", cookie=pair, data=b"csrf_token=abc", headers={**form, "Origin": "http://evil.example"}) == 403
    # the JSON API takes bearer tokens only: the cookie alone is refused
    assert _call(f"{server.url}/resilience/api/incidents/{seeded.open_ids[-1]}/ack", "POST", cookie=f"_token={token}", data=b"") == 403
    with console["warehouse"].begin() as conn:
        assert conn.execute(select(incidents.c.status).where(incidents.c.id == seeded.open_ids[-1])).scalar() == "open"


def _cli(console, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **console["env"], "RESILIENT_ETL_USER": "cli-user"}
    return subprocess.run([str(Path(sys.executable).with_name("resilient-etl")), *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_person_logs_in_reads_every_page_and_acts_through_the_buttons(console) -> None:
    server, seeded, warehouse = console["server"], console["seeded"], console["warehouse"]
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        login(page, server.url, "admin", "admin")

        # the navigation entry renders the console inside the Airflow UI
        page.goto(f"{server.url}/plugin/resilience")
        frame = page.frame_locator("iframe[title=Resilience]")
        assert frame.locator("h1").inner_text(timeout=60_000) == "Overview"
        frame.locator("#health-table[data-loaded='1']").wait_for(timeout=60_000)
        screenshot(page, "console-in-airflow-ui")

        # the overview, measured: server time from Server-Timing, browser time from Navigation Timing
        timings = []
        for _ in range(3):
            response = page.goto(f"{server.url}/resilience/ui/overview")
            page.wait_for_selector("#health-table[data-loaded='1']", timeout=60_000)
            nav = page.evaluate("() => performance.getEntriesByType('navigation')[0].toJSON()")
            fragment = page.evaluate("() => performance.getEntriesByType('resource').filter(r => r.name.includes('fragments/health'))[0].responseEnd")
            server_ms = float(re.search(r"total;dur=([\d.]+)", response.headers["server-timing"]).group(1))
            timings.append({"server_ms": server_ms, "browser_load_ms": nav["loadEventEnd"], "health_loaded_ms": fragment})
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / "timing.json").write_text(json.dumps({"runs": 100, "incidents": 1000, "overview": timings}, indent=2))
        print("overview timings", timings)
        screenshot(page, "overview")
        counts = page.inner_text("#incidents p")
        assert "acknowledged: 50" in counts and "open: 50" in counts and "resolved: 900" in counts
        assert page.inner_text(".backlog") == str(backlog_size(warehouse))
        assert page.locator("#breaker-timeline svg").count() == 1 and page.locator("#reconciliation-chart svg").count() == 1
        assert page.locator("#health-table td", has_text="warehouse_default").count() == 1

        page.goto(f"{server.url}/resilience/ui/incidents")
        assert page.locator("table.incidents tr[data-status]").count() == seeded.active
        screenshot(page, "incidents")
        target = seeded.open_ids[-1]
        page.locator(f"#incident-{target} button[name=ack]").click()
        page.wait_for_selector(".flash")
        assert f"incident #{target} acknowledged by admin" in page.inner_text(".flash")
        listed = {i["id"]: i for i in json.loads(_cli(console, "incidents", "list", "-o", "json").stdout)}
        assert listed[target]["status"] == "acknowledged"
        page.goto(f"{server.url}/resilience/ui/incidents")
        page.fill(f"#incident-{target} input[name=note]", "upstream fixed, replayed")
        page.locator(f"#incident-{target} button[name=resolve]").click()
        page.wait_for_selector(".flash")
        assert target not in {i["id"] for i in json.loads(_cli(console, "incidents", "list", "-o", "json").stdout)}
        page.goto(f"{server.url}/resilience/ui/incidents?status=resolved&limit=1000")
        timeline = page.inner_text(f"#incident-{target} + tr.timeline")
        assert "acknowledged" in timeline and "resolved: upstream fixed, replayed — admin" in timeline
        with warehouse.begin() as conn:
            who = conn.execute(
                select(manual_overrides.c.action, manual_overrides.c.by_user).where(manual_overrides.c.target == f"incident #{target}")
            ).all()
        assert sorted(who) == [("incident-ack", "admin"), ("incident-resolve", "admin")]

        page.goto(f"{server.url}/resilience/ui/breakers")
        page.on("dialog", lambda d: d.accept())
        page.fill("#breaker-companies_house form[action$='/open'] input[name=reason]", "CH maintenance window")
        page.locator("#breaker-companies_house button[name=open]").click()
        page.wait_for_selector(".flash")
        assert page.inner_text("#breaker-companies_house .state-open") == "open"
        states = {b["name"]: b["state"] for b in json.loads(_cli(console, "breakers", "-o", "json").stdout)}
        assert states["companies_house"] == "open"
        assert "CH maintenance window" in page.inner_text("#audit") and "admin" in page.inner_text("#audit")
        screenshot(page, "breakers")
        page.fill("#breaker-companies_house form[action$='/reset'] input[name=reason]", "maintenance over")
        page.locator("#breaker-companies_house button[name=reset]").click()
        page.wait_for_selector(".flash")
        assert json.loads(_cli(console, "breakers", "-o", "json").stdout)[1]["state"] == "closed"

        page.goto(f"{server.url}/resilience/ui/quarantine?run_id={urllib.request.quote(seeded.detail_run)}")
        rows = page.locator("#quarantine-rows tbody tr")
        assert rows.count() == 3 and "NOT A PC" in page.inner_text("#quarantine-rows")
        assert "bad_header.csv" in page.inner_text("#rejected")
        screenshot(page, "quarantine")
        page.locator("#quarantine-summary form", has=page.locator("input[value=invalid_postcode]")).locator("input[name=why]").fill(
            "postcode rule fixed"
        )
        page.locator("#quarantine-summary form", has=page.locator("input[value=invalid_postcode]")).locator("button").click()
        page.wait_for_selector(".flash")
        assert "2 rows of" in page.inner_text(".flash")
        assert len(list(console["dirs"]["landing"].glob("*.csv"))) == 1

        page.goto(f"{server.url}/resilience/ui/drills")
        assert page.locator("#drills tbody tr").count() == 3 and "NO" in page.inner_text("#drills tr:has-text('network-cut')")
        screenshot(page, "drills")

        # the DAG run's own page in the Airflow UI, its Resilience tab
        page.goto(f"{server.url}/dags/company_enrichment/runs/{urllib.request.quote(seeded.detail_run, safe='')}/plugin/resilience-run")
        run = page.frame_locator("iframe[title=Resilience]")
        run.locator("#reconciliation").wait_for(timeout=60_000)
        assert "199" in run.locator("#reconciliation").inner_text()
        assert run.locator("#sources tr:has-text('postcode') td").all_inner_texts()[1:] == ["5", "3", "2", "1"]
        assert "invalid_postcode" in run.locator("#run-quarantine").inner_text()
        assert run.locator("#run-state").inner_text() == "queued"
        screenshot(page, "dag-run-tab")

        page.goto(f"{server.url}/resilience/docs")
        page.wait_for_selector(".opblock", timeout=60_000)
        assert page.locator(".opblock").count() >= 9
        screenshot(page, "api-docs")
    # offline: every page, chart, script and the API docs came from the API server itself (no CDN)
    elsewhere = sorted({u for u in requested if not u.startswith((server.url, "data:", "about:", "blob:"))})
    assert requested and not elsewhere, elsewhere


def test_a_viewer_sees_the_pages_without_the_buttons(console) -> None:
    server = console["server"]
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        login(page, server.url, "viewer", "viewer")
        page.goto(f"{server.url}/resilience/ui/incidents")
        assert "viewer (read only)" in page.inner_text("header")
        assert page.locator("button[name=ack]").count() == 0 and page.locator("button[name=resolve]").count() == 0
        page.goto(f"{server.url}/resilience/ui/breakers")
        assert page.locator("button[name=open]").count() == 0
        screenshot(page, "viewer-breakers")
    with console["warehouse"].begin() as conn:
        assert conn.execute(select(func.count()).select_from(manual_overrides).where(manual_overrides.c.by_user == "viewer")).scalar() == 0
