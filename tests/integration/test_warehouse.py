"""WarehouseHook and the pipeline steps on real SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import event, func, inspect, select

from resilient_etl.exceptions import BadInputFileError, ResilientEtlError, WarehouseUnavailableError
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import as_utc, metadata, quarantine, staged_rows, suppliers
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl_devtools.sandbox.data import CSV_COLUMNS

HEADER = ",".join(CSV_COLUMNS)


def _row(i: int, **over: str) -> dict:
    base = {
        "supplier_id": f"S{i}",
        "company_number": "00445790",
        "company_name": "Tesco",
        "postcode": "AB10 1AB",
        "enrichment_status": "live",
        "source_file": "f.csv",
        "source_line": i,
        "run_id": "r1",
        "loaded_at": dt.datetime.now(dt.UTC),
    }
    return {**base, **over}


def test_schema_is_idempotent_and_upsert_updates(warehouse_conn) -> None:
    hook = WarehouseHook()
    hook.ensure_schema()
    hook.ensure_schema()
    assert set(inspect(hook.engine).get_table_names()) >= set(metadata.tables)
    with hook.begin() as conn:
        hook.upsert(conn, suppliers, [_row(1), _row(2)], ["supplier_id"])
    with hook.begin() as conn:
        hook.upsert(conn, suppliers, [_row(2, company_name="Tesco PLC"), _row(3)], ["supplier_id"])
    with hook.begin() as conn:
        names = dict(conn.execute(select(suppliers.c.supplier_id, suppliers.c.company_name)).all())
    assert names == {"S1": "Tesco", "S2": "Tesco PLC", "S3": "Tesco"}
    assert hook.test_connection() == (True, f"warehouse reachable ({hook.dialect})")


def test_upsert_of_many_rows_keeps_a_repeated_keys_last_row_and_is_one_statement(warehouse_conn) -> None:
    """PostgreSQL ran an ON CONFLICT executemany statement by statement (80 µs a row): now one statement, a key's last row winning as before."""
    hook = WarehouseHook()
    hook.ensure_schema()
    rows = [_row(i) for i in range(2500)] + [_row(7, company_name="Tesco PLC")]
    statements: list[str] = []
    listen = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    event.listen(hook.engine, "before_cursor_execute", listen)
    try:
        with hook.begin() as conn:
            hook.upsert(conn, suppliers, rows, ["supplier_id"])
    finally:
        event.remove(hook.engine, "before_cursor_execute", listen)
    with hook.begin() as conn:
        names = dict(conn.execute(select(suppliers.c.supplier_id, suppliers.c.company_name)).all())
    assert len(names) == 2500 and names["S7"] == "Tesco PLC" and names["S8"] == "Tesco"
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    # one statement: PostgreSQL's INSERT ... SELECT from the rows sent by COPY, SQLite's executemany
    assert len(inserts) == 1 and ("SELECT" in inserts[0]) == (hook.dialect == "postgresql")


def test_many_rows_inserted_and_upserted_come_back_exactly_whatever_their_characters(warehouse_conn) -> None:
    """From 200 rows PostgreSQL takes them by COPY: every value must survive its text format (NULL, tabs, backslashes, line breaks)."""
    hook = WarehouseHook()
    hook.ensure_schema()
    tricky = ["tab\there", "back\\slash \\N", "line\nbreak\r\n", "", "quote ' and \" and , comma", "ünïcödé – £ 🚚", None]
    rows = [
        _row(i, company_name=f"Co {i}", address_line_1=tricky[i % len(tricky)], annual_spend_gbp=Decimal("1234.50") if i % 2 else None)
        for i in range(250)
    ]
    with hook.begin() as conn:
        assert hook.insert_rows(conn, suppliers, rows) == 250
    again = [{**r, "town": tricky[(i + 1) % len(tricky)], "onboarded_on": dt.date(2024, 2, 29)} for i, r in enumerate(rows)]
    with hook.begin() as conn:
        hook.upsert(conn, suppliers, [*again, {**again[3], "company_name": "Last wins"}], ["supplier_id"])
        hook.upsert(conn, suppliers, again[5:225], ["supplier_id"])  # the same columns again in one transaction
    with hook.begin() as conn:
        back = {r.supplier_id: r for r in conn.execute(select(suppliers))}
    assert len(back) == 250
    for i, r in enumerate(again):
        got = back[r["supplier_id"]]
        assert (got.address_line_1, got.town, got.annual_spend_gbp, got.onboarded_on) == (
            r["address_line_1"],
            r["town"],
            r["annual_spend_gbp"],
            r["onboarded_on"],
        ), i
    assert back["S3"].company_name == "Last wins" and as_utc(back["S4"].loaded_at) == rows[4]["loaded_at"]


def test_update_rows_sets_the_given_columns_on_the_rows_their_keys_name_only(warehouse_conn) -> None:
    """Many rows: one UPDATE ... FROM the rows sent by COPY on PostgreSQL; few: an executemany; the same result."""
    hook = WarehouseHook()
    hook.ensure_schema()
    with hook.begin() as conn:
        hook.insert_rows(conn, suppliers, [_row(i) for i in range(300)])
    for some in (range(0, 250), range(280, 285)):
        changes = [
            {"supplier_id": f"S{i}", "town": f"Town\t{i}\\", "onboarded_on": dt.date(2020, 1, 1 + i % 28), "annual_spend_gbp": None} for i in some
        ]
        with hook.begin() as conn:
            assert hook.update_rows(conn, suppliers, changes, ["supplier_id"]) == len(changes)
    with hook.begin() as conn:
        back = {r.supplier_id: r for r in conn.execute(select(suppliers))}
    for i in range(300):
        changed = i < 250 or 280 <= i < 285
        assert back[f"S{i}"].town == (f"Town\t{i}\\" if changed else None), i
        assert back[f"S{i}"].onboarded_on == (dt.date(2020, 1, 1 + i % 28) if changed else None), i
        assert back[f"S{i}"].company_name == "Tesco"  # a column not given is left alone


def test_a_value_the_database_refuses_among_many_rows_is_its_typed_error_and_nothing_is_written(pg_warehouse) -> None:
    """Rows sent by COPY fail as a statement does: the driver's error typed, the transaction rolled back."""
    hook = WarehouseHook()
    hook.ensure_schema()
    rows = [_row(i, company_name="x" * (300 if i == 150 else 5)) for i in range(250)]
    with pytest.raises(sqlalchemy.exc.DataError, match="value too long"):
        with hook.begin() as conn:
            hook.insert_rows(conn, suppliers, rows)
    with pytest.raises(ResilientEtlError) as info:
        hook.transact(lambda conn: hook.upsert(conn, suppliers, rows, ["supplier_id"]))
    assert isinstance(info.value.__cause__, sqlalchemy.exc.DataError) and not info.value.transient
    with hook.begin() as conn:
        assert conn.execute(select(func.count()).select_from(suppliers)).scalar_one() == 0


def test_failed_transaction_leaves_nothing(warehouse_conn) -> None:
    hook = WarehouseHook()
    hook.ensure_schema()
    with pytest.raises(RuntimeError):
        with hook.begin() as conn:
            hook.upsert(conn, suppliers, [_row(1)], ["supplier_id"])
            raise RuntimeError("critical failure mid-batch")
    with hook.begin() as conn:
        assert conn.execute(select(func.count()).select_from(suppliers)).scalar_one() == 0


def test_transact_returns_the_work_and_raises_a_database_error_typed_with_nothing_left(warehouse_conn) -> None:
    """What a retry policy decides on: a typed error, never SQLAlchemy's; the work's writes rolled back."""
    from sqlalchemy import text

    from resilient_etl.exceptions import ResilientEtlError

    hook = WarehouseHook()
    hook.ensure_schema()
    assert hook.transact(lambda conn, rows: (hook.upsert(conn, suppliers, rows, ["supplier_id"]), len(rows))[1], [_row(1)]) == 1

    def half_then_broken(conn) -> None:
        hook.upsert(conn, suppliers, [_row(2)], ["supplier_id"])
        conn.execute(text("SELECT no_such_column FROM suppliers"))

    with pytest.raises(ResilientEtlError) as info:
        hook.transact(half_then_broken)
    assert info.value.__cause__ is not None and type(info.value).__module__.startswith("resilient_etl")
    with hook.begin() as conn:
        assert conn.execute(select(suppliers.c.supplier_id)).scalars().all() == ["S1"]


def test_unreachable_postgres_is_typed(monkeypatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "etl", "password": "pw-not-logged", "schema": "x"}),
    )
    hook = WarehouseHook()
    with pytest.raises(WarehouseUnavailableError) as info:
        hook.ensure_schema()
    assert info.value.transient is True and "pw-not-logged" not in str(info.value)
    ok, message = hook.test_connection()
    assert ok is False and "pw-not-logged" not in message


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    landing, rejected = tmp_path / "landing", tmp_path / "rejected"
    landing.mkdir()
    return landing, rejected


def test_unreadable_files_go_to_rejected_with_reason(warehouse_conn, tmp_path: Path) -> None:
    hook = WarehouseHook()
    hook.ensure_schema()
    landing, rejected = _dirs(tmp_path)
    (landing / "latin1.csv").write_bytes((HEADER + "\nS1,00445790,Caf\xe9,a,b,AB10 1AB,1,2024-01-01\n").encode("latin-1"))
    (landing / "drift.csv").write_text("supplier_id,company_number\nS1,00445790\n")
    (landing / "empty.csv").write_text("")
    (landing / "good.csv").write_text(HEADER + "\nS1,00445790,Tesco,1 Rd,Aberdeen,AB10 1AB,10,2024-01-01\n\n")
    summary = extract(hook, landing_dir=landing, rejected_dir=rejected, run_id="r1")
    assert summary["files"] == ["good.csv"] and summary["rows_staged"] == 1
    reasons = {r["file"]: r["reason"] for r in summary["rejected_files"]}
    assert "not UTF-8" in reasons["latin1.csv"]
    assert "company_name" in reasons["drift.csv"] and "header lacks required columns" in reasons["drift.csv"]
    assert "empty file" in reasons["empty.csv"]
    assert sorted(p.name for p in landing.iterdir()) == ["good.csv"]
    for name, reason in reasons.items():
        assert (rejected / name).exists()
        assert (rejected / f"{name}.reason.txt").read_text().strip() == reason
    with hook.begin() as conn:
        q = conn.execute(select(quarantine.c.source_file, quarantine.c.error_category).where(quarantine.c.stage == "extract")).all()
    assert sorted(q) == [("drift.csv", "bad_input_file"), ("empty.csv", "bad_input_file"), ("latin1.csv", "bad_input_file")]
    with pytest.raises(BadInputFileError, match="does not exist"):
        extract(hook, landing_dir=tmp_path / "nowhere", rejected_dir=rejected, run_id="r1")


def test_extract_resumes_and_full_refresh_restages(warehouse_conn, tmp_path: Path) -> None:
    hook = WarehouseHook()
    hook.ensure_schema()
    landing, rejected = _dirs(tmp_path)
    lines = (
        [HEADER]
        + [f"S{i},00445790,Tesco,1 Rd,Aberdeen,AB10 1AB,10,2024-01-01" for i in range(5)]
        + ["S0,00445790,Dup,1 Rd,Aberdeen,AB10 1AB,10,2024-01-01", "S9,1-2,Bad,1 Rd,Aberdeen,nope,x,2024-02-30"]
    )
    (landing / "a.csv").write_text("\n".join(lines) + "\n")
    assert extract(hook, landing_dir=landing, rejected_dir=rejected, run_id="r1")["rows_staged"] == 7
    result = validate_staged(hook, run_id="r1")
    assert (result["rows_valid"], result["rows_quarantined"]) == (5, 2)
    with hook.begin() as conn:
        q = {r.line_number: (r.error_category, r.detail) for r in conn.execute(select(quarantine))}
    assert q[7][0] == "duplicate_supplier_id"
    assert q[8][0] == "invalid_postcode" and "company_number '1-2'" in q[8][1] and "annual_spend_gbp 'x'" in q[8][1] and "2024-02-30" in q[8][1]

    again = extract(hook, landing_dir=landing, rejected_dir=rejected, run_id="r1")
    assert again["resumed_files"] == ["a.csv"] and again["rows_staged"] == 0
    assert validate_staged(hook, run_id="r1")["rows_checked"] == 0  # nothing revalidated, nothing doubled

    fresh = extract(hook, landing_dir=landing, rejected_dir=rejected, run_id="r1", full_refresh=True)
    assert fresh["rows_staged"] == 7
    assert validate_staged(hook, run_id="r1")["rows_quarantined"] == 2
    with hook.begin() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(staged_rows)).scalar_one() == 7
