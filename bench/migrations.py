"""
Warehouse migration times on a warehouse of N rows (suppliers and etl_checkpoints, N each), on PostgreSQL
and SQLite: upgrade 0001 -> 0002 and the rollback 0002 -> 0001, beside a baseline that rewrites the
altered table once (CREATE TABLE ... AS SELECT), the least a table-copying ALTER can cost.

PostgreSQL adds and drops a nullable column without touching the rows (a catalogue change); SQLite's
batch mode copies the table, so its ratio against one copy is the figure to watch.
Usage: python bench/migrations.py [rows]
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy
from sqlalchemy import text

from resilient_etl.hooks.warehouse import migrations
from resilient_etl.hooks.warehouse.schema import metadata

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _fill(engine: sqlalchemy.Engine, rows: int) -> None:
    suppliers, checkpoints = metadata.tables["suppliers"], metadata.tables["etl_checkpoints"]
    with engine.begin() as conn:
        migrations.upgrade(conn, "0001")
        for start in range(0, rows, 10_000):
            n = range(start, min(rows, start + 10_000))
            conn.execute(
                suppliers.insert(),
                [
                    {"supplier_id": f"S{i:07d}", "company_number": "00445790", "company_name": f"Supplier {i}", "postcode": "SW1A 1AA"}
                    | {"enrichment_status": "live", "source_file": "s.csv", "source_line": i, "run_id": "bench", "loaded_at": NOW}
                    for i in n
                ],
            )
            conn.execute(
                checkpoints.insert(),
                [
                    {"dag_id": "d", "run_id": "bench", "task_id": "load", "map_index": -1, "source_file": "s.csv", "chunk_index": i}
                    | {"first_line": i, "last_line": i, "rows": 1, "committed_at": NOW}
                    for i in n
                ],
            )


def _timed(engine: sqlalchemy.Engine, step) -> float:
    t0 = time.perf_counter()
    with engine.begin() as conn:
        step(conn)
    return time.perf_counter() - t0


def measure(name: str, engine: sqlalchemy.Engine, rows: int) -> None:
    _fill(engine, rows)
    copy = _timed(engine, lambda c: c.execute(text("CREATE TABLE copy_baseline AS SELECT * FROM etl_checkpoints")))
    _timed(engine, lambda c: c.execute(text("DROP TABLE copy_baseline")))
    upgrade = _timed(engine, lambda c: migrations.upgrade(c, "0002"))
    downgrade = _timed(engine, lambda c: migrations.downgrade(c, "0001"))
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT (SELECT count(*) FROM suppliers), (SELECT count(*) FROM etl_checkpoints)")).one()
    print(
        f"{name:10} {rows:,} rows: upgrade {upgrade:.2f} s ({upgrade / copy:.2f} x one table copy of {copy:.2f} s), "
        f"rollback {downgrade:.2f} s ({downgrade / copy:.2f} x); rows kept {kept[0]:,} suppliers, {kept[1]:,} checkpoints"
    )


def main(rows: int) -> None:
    admin = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    db = f"retl_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    try:
        pg = sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}")
        measure("postgresql", pg, rows)
        pg.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", sqlalchemy.create_engine(f"sqlite:///{Path(tmp) / 'w.db'}"), rows)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
