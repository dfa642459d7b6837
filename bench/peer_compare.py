"""
Ours vs the peer: the company_enrichment flow against bench/peer/ (the DAG a competent data engineer writes
with stock parts: csv, requests + tenacity, SQLAlchemy, Airflow task retries) on the same drop, sandbox
and PostgreSQL, side by side, fault-free and under faults:

* 10 % of both APIs' requests answered 503;
* a 30 s outage of Companies House (every request 503) from the moment the company stage starts.

Per flow: wall time, run completed?, rows lost (neither loaded nor set aside with a reason), rows
duplicated, rows loaded without their enrichment (``pending``: to be re-enriched later), requests to the
APIs and requests answered by the fault. Both start on a warehouse whose tables exist. The peer's Airflow task retries (2, 30 s apart, as its
default_args) are reproduced by calling a failed task again after the same delay; ours runs its stages
with the retry policies, budgets and breakers of config/resilience.yaml. A warehouse restart mid-load is
not measured here (see the pg-failover drill).

Usage: python bench/peer_compare.py [rows]   (default 1000)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import sqlalchemy
from sqlalchemy import text

from _common import row, scratch_database, use_sandbox
from resilient_etl.config import get_config
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.load import load
from resilient_etl.pipeline.reconcile import reconcile
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY
from resilient_etl_devtools.sandbox.data import SampleDrop, write_sample_csv
from resilient_etl_devtools.sandbox.server import Sandbox

sys.path.insert(0, str(Path(__file__).parent / "peer"))
import peer_pipeline as peer  # the peer's task bodies, as its DAG calls them

PEER_RETRIES, PEER_RETRY_DELAY = 2, 30.0  # supplier_onboarding_peer's default_args
OUTAGE_SECONDS = 30.0
SCENARIOS = ("fault-free", "10 % 503s", "30 s CH outage")


class Faults:
    """The scenario's faults on the sandbox, and the hook that starts the outage with the company stage."""

    def __init__(self, sb: Sandbox, scenario: str) -> None:
        self.sb, self.scenario = sb, scenario
        self._timer: threading.Timer | None = None
        if scenario == "10 % 503s":
            for app, endpoint in ((sb.postcodes, "bulk"), (sb.companies, "company")):
                requests.put(f"{app.url}/__sandbox/faults/{endpoint}", json={"status": 503, "rate": 0.1}, timeout=5)

    def company_stage_starts(self) -> None:
        if self.scenario != "30 s CH outage" or self._timer is not None:
            return
        requests.put(f"{self.sb.companies.url}/__sandbox/faults/company", json={"status": 503, "rate": 1.0}, timeout=5)
        self._timer = threading.Timer(OUTAGE_SECONDS, lambda: requests.delete(f"{self.sb.companies.url}/__sandbox/faults/company", timeout=5))
        self._timer.start()

    def finish(self) -> dict[str, int]:
        if self._timer is not None:
            self._timer.cancel()
        counts = {"requests": 0, "faulted": 0}
        for app in (self.sb.postcodes, self.sb.companies):
            snap = app.registry.snapshot()
            counts["requests"] += sum(app.registry.requests.values())
            counts["faulted"] += sum(snap["injected"].values())
        return counts


def warehouse(db: str) -> WarehouseHook:
    """Our warehouse in ``db``, its schema in place (made before the clock starts: a run meets an existing warehouse)."""
    os.environ["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] = json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": db}
    )
    wh = WarehouseHook(retry_policy=get_config().retry.policy("database"))
    wh.ensure_schema()
    return wh


def prepare_peer(db: str) -> None:
    """The peer's table in ``db``, made before the clock starts as ours is."""
    engine = sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}")
    with engine.begin() as conn:
        conn.execute(text(peer.SCHEMA))
    engine.dispose()


def run_ours(folder: Path, drop: SampleDrop, wh: WarehouseHook, faults: Faults) -> dict[str, Any]:
    cfg = get_config()
    run = "compare"
    completed = True
    try:
        extract(wh, landing_dir=folder / "landing", rejected_dir=folder / "rejected", run_id=run)
        validate_staged(wh, run_id=run)
        enrich_postcodes(wh, PostcodesIoHook(retry_policy=cfg.retry.policy("postcodes_io")), run_id=run)
        faults.company_stage_starts()
        enrich_companies(wh, CompaniesHouseHook(retry_policy=cfg.retry.policy("companies_house")), run_id=run)
        load(wh, run_id=run, batch_size=cfg.load.batch_size, chunk_size=cfg.load.chunk_size)
        summary = reconcile(wh, run_id=run, dag_id="company_enrichment", landing_dir=folder / "landing", archive_dir=folder / "archive")
    except Exception as exc:  # a failed run is a result here, not a crash of the bench
        logging.getLogger(__name__).warning("ours failed: %s", exc)
        completed, summary = False, {"rows_loaded": 0, "rows_quarantined": 0, "rows_pending": 0}
    with wh.begin() as conn:
        loaded, distinct = conn.execute(text("SELECT count(*), count(DISTINCT supplier_id) FROM suppliers")).one()
    accounted = summary["rows_loaded"] + summary["rows_quarantined"] + summary["rows_pending"]
    return {
        "completed": completed,
        "loaded": loaded,
        "duplicated": loaded - distinct,
        "lost": drop.rows - accounted,
        "pending": summary["rows_pending"],
    }


def _task(fn: Callable[[], Any]) -> bool:
    """Run one peer task as Airflow would: up to 1 + retries tries, retry_delay apart; return whether it succeeded."""
    for attempt in range(PEER_RETRIES + 1):
        try:
            fn()
            return True
        except Exception as exc:  # Airflow marks the try failed and retries the task, whatever the error
            logging.getLogger(__name__).warning("peer task %s try %s failed: %s", getattr(fn, "__name__", fn), attempt + 1, exc)
            if attempt < PEER_RETRIES:
                time.sleep(PEER_RETRY_DELAY)
    return False


def run_peer(folder: Path, drop: SampleDrop, db: str, sb: Sandbox, faults: Faults) -> dict[str, Any]:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
    work = folder / "peer"
    work.mkdir()
    rows, pcs, cos = work / "rows.json", work / "postcodes.json", work / "companies.json"

    def companies() -> int:
        faults.company_stage_starts()
        return peer.enrich_companies(rows, cos, sb.companies.url, DEFAULT_API_KEY)

    completed = (
        _task(lambda: peer.extract_validate(folder / "landing", rows, work / "rejects.csv"))
        and _task(lambda: peer.enrich_postcodes(rows, pcs, sb.postcodes.url))
        and _task(companies)
        and _task(lambda: peer.load(rows, pcs, cos, url))
    )
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT to_regclass('peer_suppliers') IS NOT NULL")).scalar_one()
        loaded, distinct = conn.execute(text("SELECT count(*), count(DISTINCT supplier_id) FROM peer_suppliers")).one() if exists else (0, 0)
        unenriched = conn.execute(text("SELECT count(*) FROM peer_suppliers WHERE co_name IS NULL")).scalar_one() if exists else 0
    engine.dispose()
    rejected = sum(1 for _ in (work / "rejects.csv").open(encoding="utf-8")) if (work / "rejects.csv").exists() else 0
    return {"completed": completed, "loaded": loaded, "duplicated": loaded - distinct, "lost": drop.rows - loaded - rejected, "pending": unenriched}


def one(flow: str, scenario: str, rows: int) -> dict[str, Any]:
    with scratch_database("peer") as db:
        with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=10_000_000) as sb:
            folder = Path(tmp)
            use_sandbox(sb, folder / "unused.db")
            drop = write_sample_csv(folder / "landing" / "drop.csv", rows=rows)
            faults = Faults(sb, scenario)
            wh = warehouse(db) if flow == "ours" else prepare_peer(db)
            started = time.perf_counter()
            result = run_ours(folder, drop, wh, faults) if flow == "ours" else run_peer(folder, drop, db, sb, faults)
            result["seconds"] = time.perf_counter() - started
            result.update(faults.finish())
            return result


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    logging.disable(logging.INFO)
    print(
        f"{rows} rows (3 % dirty, 1,500 companies in the register), PostgreSQL, {os.cpu_count()} cores; ours: retries, budgets and "
        f"breakers from config/resilience.yaml; peer: tenacity 5 tries 1-16 s, Airflow retries {PEER_RETRIES} x {PEER_RETRY_DELAY:.0f} s"
    )
    results: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        for flow in ("ours", "peer"):
            results[f"{flow}/{scenario}"] = one(flow, scenario, rows)
    for scenario in SCENARIOS:
        ours, theirs = results[f"ours/{scenario}"], results[f"peer/{scenario}"]
        print(f"\n{scenario}")
        print(row("", "ours", "peer", "ours : peer"))
        print(row("wall time (s)", f"{ours['seconds']:.1f}", f"{theirs['seconds']:.1f}", f"{ours['seconds'] / theirs['seconds']:.2f}"))
        for key, label in (
            ("completed", "run completed"),
            ("lost", "rows lost"),
            ("duplicated", "rows duplicated"),
            ("loaded", "rows loaded"),
            ("pending", "loaded without enrichment"),
            ("requests", "API requests"),
            ("faulted", "requests answered by the fault"),
        ):
            print(row(label, ours[key], theirs[key]))
    print("\nJSON " + json.dumps(results))


if __name__ == "__main__":
    main()
