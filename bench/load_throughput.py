"""
Load throughput into PostgreSQL: the savepoint/checkpoint loader vs a bare single-transaction
executemany of the same supplier rows (the baseline), clean and with 1 % poison rows of two kinds
(a value wider than its column; a CHECK only the database knows), both isolated under savepoints;
the loader's
own logic in one transaction without chunks shows what the savepoints and checkpoints cost on top of
reading and upserting. Then, after a SIGKILL at about half of a file, how many rows the rerun
processes beyond those never committed.

Targets: loader/bare >= 0.8 clean, >= 0.5 with 1 % poison; reprocessed <= one chunk.
Usage: python bench/load_throughput.py [rows]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy
from sqlalchemy import delete, func, insert, select, text, update

from _common import row, use_sandbox
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import etl_checkpoints, quarantine, run_enrichment, staged_rows, suppliers
from resilient_etl.pipeline.checkpoints import committed_chunks
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.load import load
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl_devtools.sandbox.data import write_sample_csv
from resilient_etl_devtools.sandbox.server import Sandbox

ADMIN = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
BATCH, CHUNK = 5000, 500


def _reset_load(wh: WarehouseHook, run_id: str) -> None:
    with wh.begin() as conn:
        conn.execute(delete(suppliers))
        conn.execute(delete(etl_checkpoints))
        conn.execute(delete(quarantine).where(quarantine.c.stage == "load"))
        conn.execute(update(staged_rows).where(staged_rows.c.run_id == run_id, staged_rows.c.status != "quarantined").values(status="valid"))
    with wh.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))


def _poison(wh: WarehouseHook, run_id: str, share: float) -> None:
    """Break the registered office of some companies: every supplier of those companies is poison."""
    e = run_enrichment
    with wh.begin() as conn:
        conn.execute(text("ALTER TABLE run_enrichment ALTER COLUMN co_registered_office TYPE text"))
        keys = conn.execute(select(e.c.lookup_key).where(e.c.run_id == run_id, e.c.kind == "company").order_by(e.c.lookup_key)).scalars().all()
        bad = keys[: max(1, round(len(keys) * share))]
        conn.execute(update(e).where(e.c.run_id == run_id, e.c.kind == "company", e.c.lookup_key.in_(bad)).values(co_registered_office="x" * 600))


def _unpoison(wh: WarehouseHook, run_id: str) -> None:
    e = run_enrichment
    with wh.begin() as conn:
        conn.execute(
            update(e).where(e.c.run_id == run_id, e.c.kind == "company", func.length(e.c.co_registered_office) > 500).values(co_registered_office="x")
        )


def _dba_rule(wh: WarehouseHook, run_id: str, share: float) -> None:
    """A CHECK the pipeline does not know about, refusing every supplier of some companies."""
    e = run_enrichment
    with wh.begin() as conn:
        keys = conn.execute(select(e.c.lookup_key).where(e.c.run_id == run_id, e.c.kind == "company").order_by(e.c.lookup_key.desc())).scalars().all()
        listed = ", ".join(f"'{k}'" for k in keys[: max(1, round(len(keys) * share))])
        conn.execute(text(f"ALTER TABLE suppliers ADD CONSTRAINT dba_rule CHECK (company_number NOT IN ({listed}))"))


def _bare(wh: WarehouseHook, records: list[dict]) -> float:
    with wh.begin() as conn:
        conn.execute(delete(suppliers))
    started = time.perf_counter()
    with wh.begin() as conn:
        conn.execute(insert(suppliers), records)
    return time.perf_counter() - started


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    db = f"retl_bench_{uuid.uuid4().hex[:8]}"
    with ADMIN.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    try:
        with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=10_000_000) as sb:
            use_sandbox(sb, Path(tmp) / "unused.db")
            os.environ["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] = json.dumps(
                {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": db}
            )
            wh = WarehouseHook()
            wh.ensure_schema()
            run_id = "bench"
            write_sample_csv(Path(tmp) / "landing" / "s.csv", rows=rows, dirty_share=0)
            extract(wh, landing_dir=Path(tmp) / "landing", rejected_dir=Path(tmp) / "rejected", run_id=run_id)
            validate_staged(wh, run_id=run_id)
            enrich_postcodes(wh, PostcodesIoHook(), run_id=run_id)
            enrich_companies(wh, CompaniesHouseHook(), run_id=run_id)
            with wh.begin() as conn:
                valid = conn.execute(select(func.count()).where(staged_rows.c.run_id == run_id, staged_rows.c.status == "valid")).scalar_one()

            _reset_load(wh, run_id)
            started = time.perf_counter()
            load(wh, run_id=run_id, batch_size=BATCH, chunk_size=CHUNK)
            loader = time.perf_counter() - started
            with wh.begin() as conn:
                records = [dict(r._mapping) for r in conn.execute(select(suppliers))]
            bare = _bare(wh, records)

            _reset_load(wh, run_id)
            started = time.perf_counter()
            load(wh, run_id=run_id, batch_size=valid, chunk_size=valid)  # the same logic, one transaction, one savepoint
            one_tx = time.perf_counter() - started

            _reset_load(wh, run_id)
            _poison(wh, run_id, 0.01)
            started = time.perf_counter()
            wide = load(wh, run_id=run_id, batch_size=BATCH, chunk_size=CHUNK, max_quarantine_share=0.5)
            poisoned = time.perf_counter() - started
            _unpoison(wh, run_id)

            _reset_load(wh, run_id)
            _dba_rule(wh, run_id, 0.01)
            started = time.perf_counter()
            refused = load(wh, run_id=run_id, batch_size=BATCH, chunk_size=CHUNK, max_quarantine_share=0.5)
            isolated = time.perf_counter() - started
            with wh.begin() as conn:
                conn.execute(text("ALTER TABLE suppliers DROP CONSTRAINT dba_rule"))

            print(f"{valid} rows into PostgreSQL; batch {BATCH}, chunk {CHUNK}")
            print(row("", "seconds", "rows/s", "ratio to bare"))
            print(row("bare executemany (baseline)", f"{bare:.2f}", f"{valid / bare:.0f}", "1.00"))
            print(row("loader logic, 1 tx, no chunks", f"{one_tx:.2f}", f"{valid / one_tx:.0f}", f"{bare / one_tx:.2f}"))
            print(row("loader, clean", f"{loader:.2f}", f"{valid / loader:.0f}", f"{bare / loader:.2f}"))
            print(
                row(f"loader, {wide['rejected_by_database']} too-wide rows", f"{poisoned:.2f}", f"{valid / poisoned:.0f}", f"{bare / poisoned:.2f}")
            )
            print(
                row(
                    f"loader, {refused['rejected_by_database']} DB-refused rows",
                    f"{isolated:.2f}",
                    f"{valid / isolated:.0f}",
                    f"{bare / isolated:.2f}",
                )
            )

            # SIGKILL at about half, then rerun
            _reset_load(wh, run_id)
            with wh.begin() as conn:
                conn.execute(delete(quarantine).where(quarantine.c.stage == "load"))
                conn.execute(update(staged_rows).where(staged_rows.c.run_id == run_id).values(status="valid"))
            worker = Path(__file__).resolve().parents[1] / "tests" / "_support" / "load_worker.py"
            proc = subprocess.Popen(
                [sys.executable, str(worker), run_id], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
            )
            while committed_chunks(wh, dag_id="company_enrichment", run_id=run_id, task_id="load")[1] < valid // 2:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            _, committed = committed_chunks(wh, dag_id="company_enrichment", run_id=run_id, task_id="load")
            rerun = load(wh, run_id=run_id, batch_size=200, chunk_size=50)
            reprocessed = rerun["rows"] - (valid - committed)
            print(row("killed at (rows committed)", committed))
            print(row("rerun processed", rerun["rows"]))
            print(row("reprocessed beyond uncommitted", reprocessed, "(target <= one chunk: 50)"))
    finally:
        with ADMIN.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
