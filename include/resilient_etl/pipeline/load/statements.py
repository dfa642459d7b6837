"""The load's SQL: the next batch of staged rows with their answers, and the upsert of some of their lines."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, DateTime, Select, String, and_, bindparam, case, select
from sqlalchemy.exc import DBAPIError

from resilient_etl.classification import is_row_error
from resilient_etl.hooks.warehouse.schema import run_enrichment, staged_rows, suppliers
from resilient_etl.pipeline.load.decision import Item, Row

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse import WarehouseHook

_NO_ANSWER = (None, None)


def _answers(conn: Connection, *, run_id: str, kind: str, keys: set[str]) -> dict[str, tuple[Any, ...]]:
    e = run_enrichment.c
    out: dict[str, tuple[Any, ...]] = {}
    ordered = sorted(k for k in keys if k)
    for start in range(0, len(ordered), 1000):  # IN lists well under SQL Server's 2,100 parameters
        out.update(
            (r[0], tuple(r[1:]))
            for r in conn.execute(
                select(e.lookup_key, e.found, e.source).where(e.run_id == run_id, e.kind == kind, e.lookup_key.in_(ordered[start : start + 1000]))
            )
        )
    return out


def select_batch(conn: Connection, *, run_id: str, batch_size: int) -> list[Row]:
    """Return the next ``batch_size`` valid rows in file order, with how their keys were answered."""
    s = staged_rows.c
    staged = conn.execute(
        select(s.source_file, s.line_number, s.raw_row, s.postcode, s.company_number)
        .where(s.run_id == run_id, s.status == "valid")
        .order_by(s.source_file, s.line_number)
        .limit(batch_size)
    ).all()
    # two keyed lookups instead of a three-way join: the plan stays an index scan even on freshly
    # staged rows whose statistics the database has not gathered yet
    postcodes = _answers(conn, run_id=run_id, kind="postcode", keys={r.postcode for r in staged})
    companies = _answers(conn, run_id=run_id, kind="company", keys={r.company_number for r in staged})
    return [
        Row(
            r.source_file,
            r.line_number,
            r.raw_row,
            r.postcode,
            r.company_number,
            *postcodes.get(r.postcode, _NO_ANSWER),
            *companies.get(r.company_number, _NO_ANSWER),
        )
        for r in staged
    ]


_STAGED = ("supplier_id", "company_number", "company_name", "address_line_1", "town", "postcode", "annual_spend_gbp", "onboarded_on")
_ENRICHED = tuple(c.name for c in suppliers.columns if c.name.startswith(("pc_", "co_")))
COLUMNS = (*_STAGED, *_ENRICHED, "enrichment_status", "enrichment_as_of", "source_file", "source_line", "run_id", "loaded_at")


@lru_cache(maxsize=1)
def rows_select() -> Select:
    """
    The SELECT producing ``suppliers`` rows for some staged lines: staged values + both enrichments.

    Built once with bind parameters (``run_id``, ``source_file``, ``lines``, ``status``,
    ``loaded_at``), so every chunk and every isolation try reuses SQLAlchemy's compiled form.
    """
    s = staged_rows
    pc, co = run_enrichment.alias("pc"), run_enrichment.alias("co")
    run_id = bindparam("run_id", type_=String)
    as_of = case((pc.c.as_of.is_(None), co.c.as_of), (co.c.as_of.is_(None), pc.c.as_of), (pc.c.as_of < co.c.as_of, pc.c.as_of), else_=co.c.as_of)
    return (
        select(
            *(s.c[c] for c in _STAGED),
            *((pc if c.startswith("pc_") else co).c[c] for c in _ENRICHED),
            bindparam("status", type_=String).label("enrichment_status"),
            as_of.label("enrichment_as_of"),
            s.c.source_file,
            s.c.line_number,
            run_id.label("run_id"),
            bindparam("loaded_at", type_=DateTime(timezone=True)).label("loaded_at"),
        )
        .select_from(
            s.outerjoin(pc, and_(pc.c.run_id == run_id, pc.c.kind == "postcode", pc.c.lookup_key == s.c.postcode)).outerjoin(
                co, and_(co.c.run_id == run_id, co.c.kind == "company", co.c.lookup_key == s.c.company_number)
            )
        )
        .where(s.c.run_id == run_id, s.c.source_file == bindparam("source_file"), s.c.line_number.in_(bindparam("lines", expanding=True)))
    )


def try_upsert(warehouse: WarehouseHook, conn: Connection, items: list[Item], *, run_id: str, now: dt.datetime) -> DBAPIError | None:
    """Load ``items`` (one file) under a savepoint; return the row-level error that rolled it back, if any."""
    by_status: dict[str, list[int]] = defaultdict(list)
    for item in items:
        by_status[item.status].append(item.row.line_number)
    try:
        with conn.begin_nested():
            for status, lines in by_status.items():
                params = {"run_id": run_id, "source_file": items[0].row.source_file, "lines": lines, "status": status, "loaded_at": now}
                warehouse.upsert_from_select(conn, suppliers, COLUMNS, rows_select(), ["supplier_id"], params)
    except DBAPIError as exc:
        if not is_row_error(exc):
            raise
        return exc
    return None
