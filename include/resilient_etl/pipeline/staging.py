"""Shared writes on ``staged_rows`` and ``quarantine`` (each inside the caller's transaction), and the statistics refresh after them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, insert, update

from resilient_etl.hooks.warehouse.schema import quarantine, staged_rows

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse import WarehouseHook


@dataclass(frozen=True)
class Quarantined:
    """A row set aside, with why."""

    source_file: str
    line_number: int
    raw_row: str
    category: str
    detail: str


def quarantine_rows(conn: Connection, *, run_id: str, stage: str, rows: Sequence[Quarantined]) -> None:
    """Write quarantine records and mark their staged rows ``quarantined``, atomically with the caller."""
    if not rows:
        return
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        insert(quarantine),
        [
            {
                "run_id": run_id,
                "stage": stage,
                "source_file": r.source_file,
                "line_number": r.line_number,
                "raw_row": r.raw_row,
                "error_category": r.category,
                "detail": r.detail,
                "quarantined_at": now,
            }
            for r in rows
        ],
    )
    set_lines_status(conn, run_id=run_id, lines=[(r.source_file, r.line_number) for r in rows], status="quarantined")


def set_lines_status(conn: Connection, *, run_id: str, lines: Sequence[tuple[str, int]], status: str) -> None:
    """Set one status on many staged rows: one UPDATE per file (with an IN list), not one per row."""
    by_file: dict[str, list[int]] = {}
    for source_file, line in lines:
        by_file.setdefault(source_file, []).append(line)
    t = staged_rows
    for source_file, numbers in by_file.items():
        for start in range(0, len(numbers), 1000):  # stay well under every driver's parameter limit
            conn.execute(
                update(t)
                .where(t.c.run_id == run_id, t.c.source_file == source_file, t.c.line_number.in_(numbers[start : start + 1000]))
                .values(status=status)
            )


def mark_valid(warehouse: WarehouseHook, conn: Connection, *, run_id: str, rows: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
    """
    Mark staged rows ``valid`` and write their validated values to the typed columns (one statement).

    :param rows: (file, line, clean record) for each row
    """
    warehouse.update_rows(
        conn,
        staged_rows,
        [{"run_id": run_id, "source_file": f, "line_number": line, "status": "valid", **clean} for f, line, clean in rows],
        ["run_id", "source_file", "line_number"],
    )


def refresh_statistics(warehouse: WarehouseHook, tables: Sequence[Table]) -> None:
    """
    Have the database gather statistics of tables a stage has just written many rows of (in one transaction).

    The stage that wrote the rows does it, not the load that reads them: without statistics of freshly
    staged rows PostgreSQL's planner joined each staged row to every answer of its kind (10,000 rows
    loaded in 31 s, not 3), and in the load the refresh cost as much as a third of the load itself.

    :raises ResilientEtlError: the database error, typed
    """
    warehouse.transact(warehouse.refresh_statistics, tables)
