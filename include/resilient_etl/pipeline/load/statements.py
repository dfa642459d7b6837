"""The load's SQL: where each file's valid lines are, the rows of unknown keys, the upsert of a range or list of lines."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, DateTime, Select, String, and_, bindparam, case, func, literal, or_, select
from sqlalchemy.exc import DBAPIError

from resilient_etl.classification import is_row_error
from resilient_etl.hooks.warehouse.schema import etl_checkpoints, run_enrichment, staged_rows, suppliers
from resilient_etl.pipeline.load.decision import RANK, Row

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse import WarehouseHook


def with_answers(run_id: Any) -> tuple[Any, Any, Any]:
    """Return ``staged_rows`` outer-joined to the run's two answers of each row, and the two answer aliases (postcode, company)."""
    s = staged_rows.c
    pc, co = run_enrichment.alias("pc"), run_enrichment.alias("co")
    joined = staged_rows.outerjoin(pc, and_(pc.c.run_id == run_id, pc.c.kind == "postcode", pc.c.lookup_key == s.postcode)).outerjoin(
        co, and_(co.c.run_id == run_id, co.c.kind == "company", co.c.lookup_key == s.company_number)
    )
    return joined, pc, co


def spans(conn: Connection, *, run_id: str) -> list[tuple[str, int, int]]:
    """Return each file's first and last still-valid staged line, in file order (from the status index alone)."""
    s = staged_rows.c
    query = (
        select(s.source_file, func.min(s.line_number), func.max(s.line_number))
        .where(s.run_id == run_id, s.status == "valid")
        .group_by(s.source_file)
        .order_by(s.source_file)
    )
    return [(f, lo, hi) for f, lo, hi in conn.execute(query)]


def valid_lines(conn: Connection, params: dict[str, Any]) -> list[Row]:
    """Return the still-valid lines of a chunk's range (read only for a chunk that failed)."""
    s = staged_rows.c
    query = (
        select(s.source_file, s.line_number)
        .where(
            s.run_id == params["run_id"],
            s.source_file == params["source_file"],
            s.status == "valid",
            s.line_number.between(params["first_line"], params["last_line"]),
        )
        .order_by(s.line_number)
    )
    return [Row.line(f, n) for f, n in conn.execute(query)]


def unknown_keys(conn: Connection, *, run_id: str) -> list[Row]:
    """
    Return the still-valid rows whose postcode or company an API said does not exist, with their answers.

    Read from the answers first: a run whose every key was found (the usual case) costs one keyed read
    of its answers, not a pass over its staged rows.
    """
    e, s = run_enrichment.c, staged_rows.c
    if conn.execute(select(e.lookup_key).where(e.run_id == run_id, e.found.is_(False)).limit(1)).first() is None:
        return []
    joined, pc, co = with_answers(s.run_id)
    query = (
        select(s.source_file, s.line_number, s.postcode, s.company_number, pc.c.found, pc.c.source, co.c.found, co.c.source)
        .select_from(joined)
        .where(s.run_id == run_id, s.status == "valid", or_(pc.c.found.is_(False), co.c.found.is_(False)))
        .order_by(s.source_file, s.line_number)
    )
    return [Row(*r) for r in conn.execute(query)]


def raw_rows(conn: Connection, *, run_id: str, source_file: str, lines: list[int]) -> dict[int, str]:
    """Return the raw text of some staged lines of one file (for the quarantine)."""
    s = staged_rows.c
    out: dict[int, str] = {}
    for start in range(0, len(lines), 1000):  # IN lists well under SQL Server's 2,100 parameters
        part = lines[start : start + 1000]
        out.update(
            conn.execute(select(s.line_number, s.raw_row).where(s.run_id == run_id, s.source_file == source_file, s.line_number.in_(part))).all()
        )
    return out


_STAGED = ("supplier_id", "company_number", "company_name", "address_line_1", "town", "postcode", "annual_spend_gbp", "onboarded_on")
_ENRICHED = tuple(c.name for c in suppliers.columns if c.name.startswith(("pc_", "co_")))
COLUMNS = (*_STAGED, *_ENRICHED, "enrichment_status", "enrichment_as_of", "source_file", "source_line", "run_id", "loaded_at")


def enrichment_status(pc: Any, co: Any) -> Any:
    """The worse of a row's two answer sources, a missing answer counting as pending: :func:`decide`'s rule in SQL."""
    worst_first = sorted(RANK, key=RANK.__getitem__, reverse=True)
    return case(
        (or_(pc.c.source.is_(None), co.c.source.is_(None)), worst_first[0]),
        *((or_(pc.c.source == v, co.c.source == v), v) for v in worst_first[:-1]),
        else_=literal(worst_first[-1], type_=String),
    )


@lru_cache(maxsize=2)
def rows_select(by: str = "range") -> Select:
    """
    The SELECT producing ``suppliers`` rows for some still-valid staged lines of one file, with both answers.

    Every output column is named as the ``suppliers`` column it fills, so the catalog's CHECK
    expressions can be evaluated over it (:mod:`.rules`). Built once per form with bind parameters
    (``run_id``, ``source_file``, ``loaded_at`` and ``first_line``/``last_line`` for ``by="range"``,
    ``lines`` for ``by="lines"``), so every chunk and every isolation try reuses the compiled form.

    :param by: ``range`` (a chunk: its lines between two numbers) or ``lines`` (an isolation group)
    """
    s = staged_rows
    run_id = bindparam("run_id", type_=String)
    joined, pc, co = with_answers(run_id)
    as_of = case((pc.c.as_of.is_(None), co.c.as_of), (co.c.as_of.is_(None), pc.c.as_of), (pc.c.as_of < co.c.as_of, pc.c.as_of), else_=co.c.as_of)
    lines = (
        s.c.line_number.between(bindparam("first_line"), bindparam("last_line"))
        if by == "range"
        else s.c.line_number.in_(bindparam("lines", expanding=True))
    )
    return (
        select(
            *(s.c[c] for c in _STAGED),
            *((pc if c.startswith("pc_") else co).c[c] for c in _ENRICHED),
            enrichment_status(pc, co).label("enrichment_status"),
            as_of.label("enrichment_as_of"),
            s.c.source_file,
            s.c.line_number.label("source_line"),
            run_id.label("run_id"),
            bindparam("loaded_at", type_=DateTime(timezone=True)).label("loaded_at"),
        )
        .select_from(joined)
        # only valid rows: those quarantined earlier in the chunk (unknown keys, rule breakers) are left out
        .where(s.c.run_id == run_id, s.c.source_file == bindparam("source_file"), s.c.status == "valid", lines)
    )


def try_upsert(warehouse: WarehouseHook, conn: Connection, params: dict[str, Any]) -> int | DBAPIError:
    """
    Load the lines ``params`` names (a range or a list, one file) under a savepoint in one statement.

    :return: the number of rows written, or the row-level error that rolled them back
    """
    try:
        with conn.begin_nested():
            return warehouse.upsert_from_select(
                conn, suppliers, COLUMNS, rows_select("lines" if "lines" in params else "range"), ["supplier_id"], params
            )
    except DBAPIError as exc:
        if not is_row_error(exc):
            raise
        return exc


def row_statuses(conn: Connection, *, run_id: str) -> dict[str, int]:
    """
    Count the run's staged rows by status, a loaded row's status derived from the load's checkpoints.

    The load writes no status per loaded row (an UPDATE of every staged row cost as much as the load's
    INSERT itself, ADR 0013): a row still ``valid`` inside the line range of a committed chunk was
    loaded, as ``pending`` when one of its answers is pending or missing (:func:`enrichment_status`),
    else as ``loaded``; a valid row outside every committed range is not loaded yet. Rows an earlier
    version marked ``loaded`` or ``pending`` count as marked.

    :param conn: a connection to the warehouse
    :param run_id: the Airflow run id
    """
    s, c = staged_rows.c, etl_checkpoints.c
    joined, pc, co = with_answers(s.run_id)
    covered = (
        select(c.chunk_index).where(c.run_id == s.run_id, c.source_file == s.source_file, s.line_number.between(c.first_line, c.last_line)).exists()
    )
    status = case(
        (s.status != "valid", s.status),
        (~covered, "valid"),
        (enrichment_status(pc, co) == "pending", "pending"),
        else_=literal("loaded", type_=String),
    ).label("status")
    rows = select(status).select_from(joined).where(s.run_id == run_id).subquery()
    return {k: int(n) for k, n in conn.execute(select(rows.c.status, func.count()).group_by(rows.c.status))}
