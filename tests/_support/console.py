"""The console's test helpers: a warehouse filled with runs, incidents, breaker changes, quarantine and drills; a real browser."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import (
    breaker_events,
    drill_results,
    incidents,
    pipeline_runs,
    quarantine,
    run_enrichment,
    staged_rows,
    suppliers,
)

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/services.sh): browsers cannot be downloaded here
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
CATEGORIES = ("upstream_5xx", "rate_limit", "database_unavailable", "data_quality", "network")
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")


@dataclass(frozen=True)
class Seeded:
    """What :func:`seed` wrote, to assert pages against."""

    run_ids: list[str]
    detail_run: str
    incident_ids: list[int]
    active: int
    open_ids: list[int]


def seed(warehouse: WarehouseHook, *, runs: int = 100, incident_count: int = 1000, now: dt.datetime | None = None) -> Seeded:
    """
    Fill ``warehouse`` with ``runs`` finished runs (the last one with suppliers, enrichment, quarantine and
    staged rows), ``incident_count`` incidents (every tenth active), breaker changes over the last day, and drills.
    """
    now = now or dt.datetime.now(dt.UTC)
    warehouse.ensure_schema()
    run_ids = [f"manual__{(now - dt.timedelta(hours=runs - i)):%Y-%m-%dT%H:%M:%S}+00:00" for i in range(runs)]
    detail = run_ids[-1]
    with warehouse.begin() as conn:
        conn.execute(
            insert(pipeline_runs),
            [
                {
                    "run_id": r,
                    "dag_id": "company_enrichment",
                    "files": json.dumps([f"suppliers_{i:03d}.csv"]),
                    "rows_in": 100 + i,
                    "rows_loaded": 90 + i - (i % 7),
                    "rows_quarantined": 4 + (i % 5),
                    "rows_pending": 6 + (i % 7) - (i % 5),
                    "status": "reconciled",
                    "summary": f"{100 + i} rows in",
                    "finished_at": now - dt.timedelta(hours=runs - i) + dt.timedelta(minutes=5),
                }
                for i, r in enumerate(run_ids)
            ],
        )
        rows = []
        for i in range(incident_count):
            status = "open" if i % 20 == 0 else "acknowledged" if i % 20 == 10 else "resolved"
            kind = (i // 10) % len(CATEGORIES)
            first = now - dt.timedelta(minutes=5 * (incident_count - i))
            rows.append(
                {
                    "dedup_key": f"company_enrichment|task_{i}|{CATEGORIES[kind]}",
                    "dag_id": "company_enrichment",
                    "task_id": f"task_{i}",
                    "category": CATEGORIES[kind],
                    "severity": SEVERITIES[i % len(SEVERITIES)],
                    "escalation_level": 1 if status == "open" else 0,
                    "status": status,
                    "occurrences": 1 + i % 3,
                    "run_id": run_ids[i % runs],
                    "error_type": "ApiUnavailableError",
                    "detail": f"seeded failure {i}",
                    "first_seen_at": first,
                    "last_seen_at": first + dt.timedelta(minutes=1),
                    "acknowledged_at": first + dt.timedelta(minutes=2) if status == "acknowledged" else None,
                    "resolved_at": first + dt.timedelta(minutes=3) if status == "resolved" else None,
                }
            )
        conn.execute(insert(incidents), rows)
        conn.execute(
            insert(breaker_events),
            [
                {
                    "name": name,
                    "from_state": a,
                    "to_state": b,
                    "reason": reason,
                    "calls": 20,
                    "failures": 11,
                    "consecutive_failures": 5,
                    "at": now - ago,
                }
                for name, a, b, reason, ago in [
                    ("postcodes_io", "closed", "open", "5 consecutive failures", dt.timedelta(hours=20)),
                    ("postcodes_io", "open", "half-open", "reset timeout passed", dt.timedelta(hours=19, minutes=50)),
                    ("postcodes_io", "half-open", "closed", "probe succeeded", dt.timedelta(hours=19, minutes=49)),
                    ("companies_house", "closed", "open", "failure rate 0.55 over 20 calls", dt.timedelta(minutes=50)),
                    ("companies_house", "open", "half-open", "reset timeout passed", dt.timedelta(minutes=40)),
                    ("companies_house", "half-open", "closed", "probe succeeded", dt.timedelta(minutes=39)),
                ]
            ],
        )
        quarantined = [
            ("validate", "invalid_postcode", {"supplier_id": "S-9001", "postcode": "NOT A PC", "company_number": "01234567"}),
            ("validate", "invalid_postcode", {"supplier_id": "S-9002", "postcode": "ZZ99", "company_number": "01234568"}),
            ("load", "value_too_long", {"supplier_id": "S-9003", "postcode": "SW1A 1AA", "company_number": "01234569"}),
        ]
        conn.execute(
            insert(quarantine),
            [
                {
                    "run_id": detail,
                    "stage": stage,
                    "source_file": "suppliers_099.csv",
                    "line_number": 10 + n,
                    "raw_row": json.dumps(raw),
                    "error_category": reason,
                    "detail": f"{reason} in line {10 + n}",
                    "quarantined_at": now,
                }
                for n, (stage, reason, raw) in enumerate(quarantined)
            ],
        )
        conn.execute(
            insert(run_enrichment),
            [
                {"run_id": detail, "kind": kind, "lookup_key": f"K{kind[0]}{n}", "source": source}
                for kind in ("postcode", "company")
                for n, source in enumerate(["live"] * 5 + ["cached"] * 3 + ["fallback"] * 2 + ["pending"])
            ],
        )
        conn.execute(
            insert(suppliers),
            [
                {
                    "supplier_id": f"S-{n:04d}",
                    "company_number": f"{n:08d}",
                    "company_name": f"Supplier {n}",
                    "postcode": "SW1A 1AA",
                    "enrichment_status": ("live", "live", "cached", "pending")[n % 4],
                    "source_file": "suppliers_099.csv",
                    "source_line": n + 2,
                    "run_id": detail,
                    "loaded_at": now,
                }
                for n in range(8)
            ],
        )
        conn.execute(
            insert(staged_rows),
            [
                {"run_id": detail, "source_file": "suppliers_099.csv", "line_number": n + 2, "raw_row": "{}", "status": status, "staged_at": now}
                for n, status in enumerate(["loaded"] * 6 + ["pending"] * 2 + ["quarantined"] * 3 + ["valid"] * 4)
            ],
        )
        conn.execute(
            insert(drill_results),
            [
                {
                    "scenario": name,
                    "target": "local",
                    "executor": "local",
                    "started_at": now - dt.timedelta(days=1),
                    "detected_at": now - dt.timedelta(days=1) + dt.timedelta(seconds=detect),
                    "detected_by": "health",
                    "time_to_detect_s": detect,
                    "rto_s": rto,
                    "rows_lost": 0,
                    "rows_duplicated": 0,
                    "dead_requests": 0,
                    "retries_used": 2,
                    "passed": passed,
                    "result": "{}",
                }
                for name, detect, rto, passed in [("api-outage", 1.5, 21.4, True), ("dr-restore", 0.5, 23.6, True), ("network-cut", 2.0, 95.0, False)]
            ],
        )
    from sqlalchemy import select

    with warehouse.begin() as conn:
        ids = [r.id for r in conn.execute(select(incidents.c.id, incidents.c.status).order_by(incidents.c.id))]
        open_ids = [r.id for r in conn.execute(select(incidents.c.id).where(incidents.c.status == "open").order_by(incidents.c.id))]
    active = sum(1 for r in rows if r["status"] != "resolved")
    return Seeded(run_ids=run_ids, detail_run=detail, incident_ids=ids, active=active, open_ids=open_ids)


def chromium_path() -> str:
    """Return Debian's Chromium, failing loudly under CI when it is missing (skipping elsewhere)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("Debian's chromium is not installed: run scripts/services.sh")
    pytest.skip("chromium not installed (scripts/services.sh installs it)")


@contextmanager
def browser() -> Iterator[Any]:
    """Yield a headless Chromium (Playwright driving the system binary), closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as build/screenshots/NAME.png (the CI artefacts)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, url: str, username: str, password: str) -> None:
    """Log in through the Airflow UI's own login form (the simple auth manager's), as a person does."""
    page.goto(f"{url}/auth/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/auth/login" not in u, timeout=60_000)
