"""
Backup and restore of an N-supplier warehouse (default 100,000) on SQLite and PostgreSQL: ``create_backup``
(dump + config + manifest with SHA-256 checksums and row counts) and ``restore_set`` (checksums, restore
into an empty database, every table's rows counted against the manifest), each beside the bare tool it
wraps - a SQLite online backup / ``pg_dump -Fc`` for the backup, the same copy back / ``pg_restore`` for
the restore - so the ratio is what the set's safety costs.

Usage: python bench/backup_restore.py [rows] [--record]   (--record writes docs/backup-bench.json, which
docs/disaster-recovery.md quotes)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy
import yaml

from _common import row  # first: it sets the Airflow home the hooks need
from resilient_etl.config import load_config
from resilient_etl.hooks.warehouse import WarehouseHook, migrations
from resilient_etl.hooks.warehouse.schema import metadata
from resilient_etl.recovery.backup import create_backup, list_sets, restore_set

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
PG = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres"}


def _fill(engine: sqlalchemy.Engine, rows: int) -> None:
    suppliers, quarantine = metadata.tables["suppliers"], metadata.tables["quarantine"]
    with engine.begin() as conn:
        migrations.upgrade(conn, "head")
        for start in range(0, rows, 10_000):
            conn.execute(
                suppliers.insert(),
                [
                    {"supplier_id": f"S{i:07d}", "company_number": f"{i % 99_999_999:08d}", "company_name": f"Supplier {i} Limited"}
                    | {"address_line_1": f"{i % 300} Union Road", "town": "Aberdeen", "postcode": "AB10 1XG", "annual_spend_gbp": i % 250_000}
                    | {"pc_country": "Scotland", "pc_region": "Aberdeen City", "co_name": f"SUPPLIER {i} LIMITED", "co_status": "active"}
                    | {
                        "enrichment_status": "live",
                        "source_file": f"drop-{i // 10_000}.csv",
                        "source_line": i % 10_000 + 2,
                        "run_id": "bench",
                        "loaded_at": NOW,
                    }
                    for i in range(start, min(rows, start + 10_000))
                ],
            )
        conn.execute(
            quarantine.insert(),
            [
                {"run_id": "bench", "stage": "validate", "source_file": "drop-0.csv", "line_number": i, "raw_row": "{}"}
                | {"error_category": "invalid_postcode", "detail": "postcode: 'ABC 123'", "quarantined_at": NOW}
                for i in range(rows // 100)
            ],
        )


def _config(folder: Path) -> Path:
    data = yaml.safe_load((ROOT / "config" / "resilience.yaml").read_text())
    data["paths"] = {k: str(folder / k) for k in ("landing", "archive", "rejected")}
    data["backup"]["dir"] = str(folder / "sets")
    (folder / "config").mkdir()
    path = folder / "config" / "resilience.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _sqlite(folder: Path, rows: int, cfg) -> dict:
    source = folder / "warehouse.db"
    os.environ["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] = json.dumps({"conn_type": "sqlite", "host": str(source)})
    _fill(sqlalchemy.create_engine(f"sqlite:///{source}"), rows)

    def bare_backup() -> None:
        with sqlite3.connect(source) as src, sqlite3.connect(folder / "bare.db") as dst:
            src.backup(dst, pages=4096)

    baseline_backup = _timed(bare_backup)
    backup_s = _timed(lambda: create_backup(cfg, config_dir=folder / "config"))
    made = list_sets(cfg.backup.dir)[-1]
    target = folder / "restored" / "warehouse.db"
    os.environ["AIRFLOW_CONN_RESTORED"] = json.dumps({"conn_type": "sqlite", "host": str(target)})

    def bare_restore() -> None:
        with sqlite3.connect(folder / "bare.db") as src, sqlite3.connect(folder / "bare-restored.db") as dst:
            src.backup(dst, pages=4096)

    baseline_restore = _timed(bare_restore)
    restore_s = _timed(lambda: restore_set(made, warehouse=WarehouseHook("restored")))
    return {"dialect": "sqlite", "rows": rows, "backup_s": round(backup_s, 2), "baseline_backup_s": round(baseline_backup, 2)} | {
        "set_bytes": made.bytes,
        "restore_s": round(restore_s, 2),
        "baseline_restore_s": round(baseline_restore, 2),
    }


def _postgres(folder: Path, rows: int, cfg) -> dict:
    admin = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    name, restored, bare = (f"retl_bench_{what}_{uuid.uuid4().hex[:6]}" for what in ("source", "restored", "bare"))
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        os.environ["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] = json.dumps({**PG, "schema": name})
        _fill(sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"), rows)
        args = ["--host", "127.0.0.1", "--port", "5432", "--username", "postgres", "--no-password"]
        baseline_backup = _timed(lambda: subprocess.run(["pg_dump", *args, "-Fc", "-f", str(folder / "bare.pgdump"), name], check=True))
        backup_s = _timed(lambda: create_backup(cfg, config_dir=folder / "config"))
        made = list_sets(cfg.backup.dir)[-1]
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{bare}"'))
        baseline_restore = _timed(lambda: subprocess.run(["pg_restore", *args, "--no-owner", "-d", bare, str(folder / "bare.pgdump")], check=True))
        os.environ["AIRFLOW_CONN_RESTORED"] = json.dumps({**PG, "schema": restored})
        restore_s = _timed(lambda: restore_set(made, warehouse=WarehouseHook("restored")))
        return {"dialect": "postgresql", "rows": rows, "backup_s": round(backup_s, 2), "baseline_backup_s": round(baseline_backup, 2)} | {
            "set_bytes": made.bytes,
            "restore_s": round(restore_s, 2),
            "baseline_restore_s": round(baseline_restore, 2),
        }
    finally:
        with admin.connect() as conn:
            for db in (name, restored, bare):
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rows = int(args[0]) if args else 100_000
    results = []
    for run in (_sqlite, _postgres):
        folder = Path(tempfile.mkdtemp(prefix="retl-bench-backup-"))
        try:
            cfg = load_config(_config(folder), environ={})
            results.append(run(folder, rows, cfg))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"Backup and restore of {rows:,} suppliers (+{rows // 100:,} quarantined rows); seconds")
    print(row("", "backup", "bare tool", "ratio", "restore+verify", "bare tool", "ratio", "set MiB"))
    for r in results:
        print(
            row(
                r["dialect"],
                r["backup_s"],
                r["baseline_backup_s"],
                f"{r['backup_s'] / max(r['baseline_backup_s'], 0.01):.2f}x",
                r["restore_s"],
                r["baseline_restore_s"],
                f"{r['restore_s'] / max(r['baseline_restore_s'], 0.01):.2f}x",
                f"{r['set_bytes'] / 1_048_576:.1f}",
            )
        )
    if "--record" in sys.argv:
        out = ROOT / "docs" / "backup-bench.json"
        out.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"recorded in {out}")


if __name__ == "__main__":
    main()
