"""Transactions, savepoints and checkpoints under real failures, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import func, select, text, update

from resilient_etl.classification import db_error
from resilient_etl.config import RetryPolicy
from resilient_etl.exceptions import DatabaseConnectionLostError, DeadlockError, QuarantineThresholdError
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import etl_checkpoints, quarantine, run_enrichment, staged_rows, suppliers
from resilient_etl.pipeline.checkpoints import committed_chunks
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.load import load
from resilient_etl.pipeline.load.statements import row_statuses
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl_devtools.sandbox.data import write_sample_csv

ONCE = RetryPolicy(dependency="database", max_attempts=1)
RUN = "run-tx"


def _prepare(tmp_path: Path, rows: int) -> WarehouseHook:
    wh = WarehouseHook()
    wh.ensure_schema()
    write_sample_csv(tmp_path / "landing" / "s.csv", rows=rows, dirty_share=0)
    extract(wh, landing_dir=tmp_path / "landing", rejected_dir=tmp_path / "rejected", run_id=RUN)
    validate_staged(wh, run_id=RUN)
    enrich_postcodes(wh, PostcodesIoHook(), run_id=RUN)
    enrich_companies(wh, CompaniesHouseHook(), run_id=RUN)
    return wh


def _poison(wh: WarehouseHook, companies: int) -> set[str]:
    """Give some companies a registered office longer than the column allows (as a buggy API might send)."""
    keys = _companies(wh, skip=0, take=companies)
    e = run_enrichment
    with wh.begin() as conn:
        if conn.dialect.name == "postgresql":  # the staging column is as wide as the target: widen it to get a bad value in
            conn.execute(text("ALTER TABLE run_enrichment ALTER COLUMN co_registered_office TYPE text"))
        conn.execute(update(e).where(e.c.run_id == RUN, e.c.kind == "company", e.c.lookup_key.in_(keys)).values(co_registered_office="x" * 600))
    return keys


def _dba_rule(wh: WarehouseHook, companies: set[str]) -> None:
    """A rule the pipeline does not know about (a DBA added it): the database itself refuses these rows."""
    listed = ", ".join(f"'{c}'" for c in sorted(companies))
    with wh.begin() as conn:
        if conn.dialect.name == "sqlite":  # SQLite cannot add a CHECK to a table: a trigger does the same
            conn.execute(
                text(
                    f"CREATE TRIGGER dba_rule BEFORE INSERT ON suppliers WHEN NEW.company_number IN ({listed}) BEGIN SELECT RAISE(ABORT, 'dba rule'); END"
                )
            )
        else:
            conn.execute(text(f"ALTER TABLE suppliers ADD CONSTRAINT dba_rule CHECK (company_number NOT IN ({listed}))"))


def _postgres(wh: WarehouseHook) -> bool:
    return wh.engine.dialect.name == "postgresql"


def _companies(wh: WarehouseHook, skip: int, take: int) -> set[str]:
    e = run_enrichment
    with wh.begin() as conn:
        return set(
            conn.execute(
                select(e.c.lookup_key).where(e.c.run_id == RUN, e.c.kind == "company").order_by(e.c.lookup_key).offset(skip).limit(take)
            ).scalars()
        )


def _count(wh: WarehouseHook, table) -> int:
    with wh.begin() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _statuses(wh: WarehouseHook) -> dict[str, int]:
    with wh.begin() as conn:
        return row_statuses(conn, run_id=RUN)


def test_poison_rows_are_isolated_and_the_rest_loads(api_connections, warehouse_conn, tmp_path) -> None:
    wh = _prepare(tmp_path, rows=300)
    too_wide = _poison(wh, companies=2)  # wider than the column (PostgreSQL) or its CHECK (SQLite)
    refused = _companies(wh, skip=10, take=3)  # a rule only the database knows
    _dba_rule(wh, refused)
    summary = load(wh, run_id=RUN, batch_size=100, chunk_size=25, max_quarantine_share=0.5)
    assert summary["rejected_by_database"] == 5
    assert summary["rows"] == 295 and summary["by_outcome"] == {"loaded": 295, "rejected_by_database": 5}
    with wh.begin() as conn:
        q = conn.execute(select(quarantine.c.error_category, quarantine.c.detail, quarantine.c.raw_row).where(quarantine.c.stage == "load")).all()
        loaded = set(conn.execute(select(suppliers.c.company_number)).scalars())
        chunks = conn.execute(select(etl_checkpoints.c.rows)).scalars().all()
    by_category = {}
    for r in q:
        by_category.setdefault(r.error_category, set()).add(json.loads(r.raw_row)["company_number"])
    assert set(by_category) == {"rejected_by_database"}
    assert {n.zfill(8) if n.isdigit() else n for n in by_category["rejected_by_database"]} == too_wide | refused
    detail = {(n.zfill(8) if (n := json.loads(r.raw_row)["company_number"]).isdigit() else n): r.detail for r in q}
    # what the catalog states is found in one read per chunk and named; what only the database knows, by trials
    for number in too_wide:
        assert detail[number].startswith("breaks a rule of the warehouse (checked before loading): ")
        assert "co_registered_office" in detail[number] and (
            "500 characters" in detail[number] or "CHECK ck_suppliers_registered_office_length" in detail[number]
        )
    for number in refused:  # PostgreSQL's dba_rule is a CHECK in the catalog; SQLite's a trigger only the database knows
        expected = (
            "breaks a rule of the warehouse (checked before loading): CHECK dba_rule ("
            if _postgres(wh)
            else "rejected by the database: IntegrityError"
        )
        assert detail[number].startswith(expected), detail[number]
    assert loaded.isdisjoint(too_wide | refused)
    # a checkpoint per statement that loaded, counting its rows: on PostgreSQL every rule is in the catalog, so
    # each batch loads whole once its breakers are set aside; SQLite's trigger refuses rows of two batches, which
    # then load in chunks of 25 (4 each)
    assert sum(chunks) == 295 and len(chunks) == (3 if _postgres(wh) else 1 + 4 + 4)
    assert _statuses(wh) == {"loaded": 295, "quarantined": 5}


def test_too_many_rejections_roll_the_batch_back(api_connections, warehouse_conn, tmp_path) -> None:
    wh = _prepare(tmp_path, rows=200)
    _poison(wh, companies=30)
    with pytest.raises(QuarantineThresholdError) as info:
        load(wh, run_id=RUN, batch_size=100, chunk_size=20, max_quarantine_share=0.05)
    assert info.value.rejected > 5 and info.value.rows == 100
    # nothing of the failed batch is visible: no suppliers, no checkpoints, no status change
    assert _count(wh, suppliers) == 0 and _count(wh, etl_checkpoints) == 0
    assert _statuses(wh) == {"valid": 200}


def test_rerun_resumes_after_the_last_committed_chunk(api_connections, warehouse_conn, tmp_path, monkeypatch) -> None:
    wh = _prepare(tmp_path, rows=500)
    from resilient_etl.pipeline import chaos

    monkeypatch.setenv(chaos.CHAOS_ENV, json.dumps({"load.batch": {"fail_after": 2}}))
    chaos.reset()
    with pytest.raises(chaos.ChaosError):
        load(wh, run_id=RUN, batch_size=100, chunk_size=50)
    assert committed_chunks(wh, dag_id="company_enrichment", run_id=RUN, task_id="load") == (3, 300)  # 3 batches committed, each one statement
    assert _count(wh, suppliers) == 300
    monkeypatch.delenv(chaos.CHAOS_ENV)
    summary = load(wh, run_id=RUN, batch_size=100, chunk_size=50)
    assert summary["rows"] == 200  # only what was never committed
    assert _count(wh, suppliers) == 500 and committed_chunks(wh, dag_id="company_enrichment", run_id=RUN, task_id="load") == (5, 500)


def test_sigkill_mid_file_then_rerun(api_connections, pg_warehouse, tmp_path) -> None:
    wh = _prepare(tmp_path, rows=2000)
    env = {**os.environ, "RESILIENT_ETL_CHAOS": json.dumps({"load.chunk": {"delay": 0.1}})}
    worker = Path(__file__).resolve().parents[1] / "_support" / "load_worker.py"
    proc = subprocess.Popen([sys.executable, str(worker), RUN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while committed_chunks(wh, dag_id="company_enrichment", run_id=RUN, task_id="load")[1] < 800:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, committed = committed_chunks(wh, dag_id="company_enrichment", run_id=RUN, task_id="load")
    assert 800 <= committed < 2000
    assert _count(wh, suppliers) == committed  # the killed batch left nothing behind
    summary = load(wh, run_id=RUN, batch_size=200, chunk_size=50)
    assert summary["rows"] == 2000 - committed  # no row processed twice
    with wh.begin() as conn:
        ids = conn.execute(select(suppliers.c.supplier_id)).scalars().all()
        lines = conn.execute(select(etl_checkpoints.c.first_line, etl_checkpoints.c.last_line).order_by(etl_checkpoints.c.first_line)).all()
    assert len(ids) == len(set(ids)) == 2000  # no duplicates, no gaps
    assert lines[0].first_line == 2 and lines[-1].last_line == 2001
    assert all(b.first_line == a.last_line + 1 for a, b in zip(lines, lines[1:]))  # chunks tile the file


def _loader_pid(engine: sqlalchemy.Engine, database: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%' LIMIT 1"),
            {"d": database},
        ).scalar()


def test_connection_killed_mid_batch_rolls_back_then_recovers(api_connections, pg_warehouse, pg_server, tmp_path, monkeypatch) -> None:
    wh = _prepare(tmp_path, rows=600)
    from resilient_etl.pipeline import chaos

    monkeypatch.setenv(chaos.CHAOS_ENV, json.dumps({"load.chunk": {"delay": 0.3}}))
    errors: list[BaseException] = []

    def run(policy: RetryPolicy) -> None:
        try:
            load(wh, run_id=RUN, batch_size=200, chunk_size=50, retry_policy=policy)
        except BaseException as exc:  # collected for the assertions below
            errors.append(exc)

    def kill_once() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pid = _loader_pid(pg_server, pg_warehouse["schema"])
            if pid and committed_chunks(wh, dag_id="company_enrichment", run_id=RUN, task_id="load")[0] >= 1:  # a batch in, the next open
                with pg_server.connect() as conn:
                    conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                return
            time.sleep(0.05)

    # without retries: the batch is rolled back and the error is typed
    killer = threading.Thread(target=kill_once)
    killer.start()
    run(ONCE)
    killer.join()
    assert len(errors) == 1 and isinstance(errors[0], DatabaseConnectionLostError) and errors[0].transient
    committed = _count(wh, suppliers)
    assert committed % 200 == 0 and committed >= 200  # whole batches only: the broken one left nothing
    # with the database retry policy the loader recovers by itself
    errors.clear()
    killer = threading.Thread(target=kill_once)
    killer.start()
    run(RetryPolicy(dependency="database", max_attempts=5, initial_wait_seconds=0.1, max_wait_seconds=0.5))
    killer.join()
    assert errors == []
    assert _count(wh, suppliers) == 600 and _statuses(wh) == {"loaded": 600}


def test_a_real_deadlock_is_typed_and_transient(pg_warehouse, pg_server) -> None:
    wh = WarehouseHook()
    wh.ensure_schema()
    with wh.begin() as conn:
        conn.execute(text("CREATE TABLE lockme (id int primary key, v int)"))
        conn.execute(text("INSERT INTO lockme VALUES (1, 0), (2, 0)"))
    barrier = threading.Barrier(2)
    caught: list[BaseException] = []

    def worker(first: int, second: int) -> None:
        try:
            with wh.engine.begin() as conn:
                conn.execute(text("UPDATE lockme SET v = v + 1 WHERE id = :i"), {"i": first})
                barrier.wait()
                conn.execute(text("UPDATE lockme SET v = v + 1 WHERE id = :i"), {"i": second})
        except sqlalchemy.exc.DBAPIError as exc:
            caught.append(db_error(exc))

    threads = [threading.Thread(target=worker, args=a) for a in ((1, 2), (2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(caught) == 1 and isinstance(caught[0], DeadlockError) and caught[0].transient


def _analyzed(wh: WarehouseHook) -> set[str]:
    with wh.begin() as conn:
        if _postgres(wh):  # last_analyze: a manual ANALYZE (autovacuum's own runs are in last_autoanalyze)
            return set(conn.execute(text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")).scalars())
        return set(conn.execute(text("SELECT DISTINCT tbl FROM sqlite_stat1")).scalars()) if _has_stat1(conn) else set()


def _forget_statistics(wh: WarehouseHook) -> None:
    with wh.begin() as conn:
        if _postgres(wh):
            conn.execute(text("SELECT pg_stat_reset_single_table_counters(relid) FROM pg_stat_user_tables"))
        elif _has_stat1(conn):
            conn.execute(text("DELETE FROM sqlite_stat1"))


def _has_stat1(conn) -> bool:
    return conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")).scalar_one() > 0


def test_the_stages_that_write_what_load_reads_have_the_database_gather_its_statistics(api_connections, warehouse_conn, tmp_path) -> None:
    """Without statistics of the freshly staged rows PostgreSQL joined each row to every answer: 10,000 rows took 31 s, not 3."""
    wh = WarehouseHook()
    wh.ensure_schema()
    write_sample_csv(tmp_path / "landing" / "s.csv", rows=50, dirty_share=0)
    extract(wh, landing_dir=tmp_path / "landing", rejected_dir=tmp_path / "rejected", run_id=RUN)
    # validate's updates by key: without statistics PostgreSQL scanned the run's rows through the status index per update
    assert "staged_rows" in _analyzed(wh)
    _forget_statistics(wh)
    validate_staged(wh, run_id=RUN)
    assert "staged_rows" in _analyzed(wh) and "run_enrichment" not in _analyzed(wh)
    enrich_postcodes(wh, PostcodesIoHook(), run_id=RUN)
    assert "run_enrichment" in _analyzed(wh)


def test_a_loaded_rows_status_is_derived_from_the_committed_chunks(api_connections, warehouse_conn, tmp_path) -> None:
    """No status is written per loaded row: inside a committed chunk's range it is loaded, outside it is not yet."""
    wh = _prepare(tmp_path, rows=100)
    load(wh, run_id=RUN, batch_size=50, chunk_size=25)
    assert _statuses(wh) == {"loaded": 100}
    with wh.begin() as conn:
        conn.execute(etl_checkpoints.delete().where(etl_checkpoints.c.first_line > 50))  # as if the last two chunks never committed
        # rows an earlier version marked loaded count as marked, checkpoint or not
        conn.execute(update(staged_rows).where(staged_rows.c.run_id == RUN, staged_rows.c.line_number > 91).values(status="loaded"))
    assert _statuses(wh) == {"loaded": 50 + 10, "valid": 40}  # lines 2-51 in chunks, 92-101 marked
    assert load(wh, run_id=RUN, batch_size=50, chunk_size=25)["rows"] == 40  # the rerun loads what is not loaded
    assert _statuses(wh) == {"loaded": 100}
