"""
Load: upsert the run's enriched rows into ``suppliers`` in batches.

* Each batch is one transaction on one connection the loader owns; inside it, each chunk runs under
  a savepoint (``begin_nested``) as one ``INSERT … SELECT … ON CONFLICT`` from the staged rows and
  their enrichment: the rows never leave the database. A chunk that fails on a row's data
  (constraint, bad or overlong value) is rolled back to its savepoint and its bad rows are isolated
  (the same statement over groups of its lines sized by generalized binary splitting, then over
  halves of a failing group, each under a savepoint): the rows the database rejects go to
  quarantine with the database's error, the good ones load.
* A chunk's checkpoint row (``etl_checkpoints``) and its staged rows' new status commit with the
  chunk's data, so a retried or cleared task resumes after the last committed chunk, exactly once.
* A critical error (connection lost, deadlock, disk full) rolls the whole batch back (no reader ever
  sees half of it) and is raised typed; transient ones are retried with the database policy first.
* More rejected rows in a batch than ``max_quarantine_share`` fails the batch.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    DateTime,
    Select,
    String,
    and_,
    bindparam,
    case,
    func,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError

from resilient_etl.pipeline import chaos
from resilient_etl.exceptions import QuarantineThresholdError
from resilient_etl.classification import db_error, is_row_error
from resilient_etl.pipeline.staging import (
    Quarantined,
    quarantine_rows,
    set_lines_status,
)
from resilient_etl.config.models import RetryPolicy
from resilient_etl.resilience.retry import Retrier
from resilient_etl.hooks.warehouse.schema import etl_checkpoints, run_enrichment, staged_rows, suppliers

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse import WarehouseHook

log = logging.getLogger(__name__)
MAX_GROUP = 16
_RANK = {"live": 0, "cached": 1, "fallback": 2, "pending": 3}


def decide(row: Any) -> tuple[str, str]:
    """
    Return (outcome, detail) for a staged row and its two enrichments (a pure function).

    ``quarantined`` with the reason when the postcode or company does not exist, else ``loaded`` or
    ``pending`` with the enrichment status: the worse of the two sources (live < cached < fallback <
    pending). A missing enrichment counts as pending.
    """
    if row.pc_found is False:
        return "quarantined", "unknown_postcode"
    if row.co_found is False:
        return "quarantined", "unknown_company"
    status = max(row.pc_source or "pending", row.co_source or "pending", key=_RANK.__getitem__)
    return ("pending" if status == "pending" else "loaded"), status


@dataclass
class _Item:
    row: Any
    outcome: str  # loaded | pending
    status: str  # the enrichment status written to suppliers


@dataclass
class BatchResult:
    """What one committed batch did."""

    rows: int = 0
    chunks: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    rejected_by_database: int = 0


@dataclass(frozen=True)
class _Row:
    """A staged row with its two enrichment answers (what :func:`decide` reads)."""

    source_file: str
    line_number: int
    raw_row: str
    postcode: str
    company_number: str
    pc_found: bool | None
    pc_source: str | None
    co_found: bool | None
    co_source: str | None


_NO_ANSWER = (None, None)


def _answers(conn: Connection, *, run_id: str, kind: str, keys: set[str]) -> dict[str, tuple[Any, ...]]:
    e = run_enrichment.c
    out: dict[str, tuple[Any, ...]] = {}
    ordered = sorted(k for k in keys if k)
    for start in range(0, len(ordered), 1000):  # IN lists well under SQL Server's 2,100 parameters
        out.update(
            (r[0], tuple(r[1:]))
            for r in conn.execute(
                select(e.lookup_key, e.found, e.source).where(
                    e.run_id == run_id, e.kind == kind, e.lookup_key.in_(ordered[start : start + 1000])
                )
            )
        )
    return out


def _select_batch(conn: Connection, *, run_id: str, batch_size: int) -> list[_Row]:
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
        _Row(r.source_file, r.line_number, r.raw_row, r.postcode, r.company_number,
             *postcodes.get(r.postcode, _NO_ANSWER), *companies.get(r.company_number, _NO_ANSWER))
        for r in staged
    ]


_STAGED = ("supplier_id", "company_number", "company_name", "address_line_1", "town", "postcode", "annual_spend_gbp", "onboarded_on")
_ENRICHED = tuple(c.name for c in suppliers.columns if c.name.startswith(("pc_", "co_")))
_COLUMNS = (*_STAGED, *_ENRICHED, "enrichment_status", "enrichment_as_of", "source_file", "source_line", "run_id", "loaded_at")


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
    as_of = case(
        (pc.c.as_of.is_(None), co.c.as_of),
        (co.c.as_of.is_(None), pc.c.as_of),
        (pc.c.as_of < co.c.as_of, pc.c.as_of),
        else_=co.c.as_of,
    )
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


def _try_upsert(warehouse: WarehouseHook, conn: Connection, items: list[_Item], *, run_id: str, now: dt.datetime) -> DBAPIError | None:
    """Load ``items`` (one file) under a savepoint; return the row-level error that rolled it back, if any."""
    by_status: dict[str, list[int]] = defaultdict(list)
    for item in items:
        by_status[item.status].append(item.row.line_number)
    try:
        with conn.begin_nested():
            for status, lines in by_status.items():
                params = {"run_id": run_id, "source_file": items[0].row.source_file, "lines": lines, "status": status, "loaded_at": now}
                warehouse.upsert_from_select(conn, suppliers, _COLUMNS, rows_select(), ["supplier_id"], params)
    except DBAPIError as exc:
        if not is_row_error(exc):
            raise
        return exc
    return None


def group_size(pool: int, expected_bad: float) -> int:
    """
    Size of the next group to try out of ``pool`` rows expected to hold ``expected_bad`` bad ones.

    Hwang's generalized binary splitting: a group of 2^floor(log2((n - d + 1) / d)) rows, so a clean
    group loads many rows in one statement and a failing one costs log2 of its size to find its bad
    row; with no more rows than 2d - 2 left, rows are tried one by one. Capped at ``MAX_GROUP``:
    the database works through a failing group's rows up to the bad one, so large failing groups cost
    more than the statements they save (measured: a try costs ~0.8 ms + ~0.06 ms per row).
    """
    d = max(1, round(expected_bad))
    if pool <= 2 * d - 2:
        return 1
    return min(MAX_GROUP, 2 ** int(math.log2((pool - d + 1) / d)))


@dataclass
class _Isolation:
    """Bad-row isolation over one chunk: the loader's tries and the running estimate of bad rows."""

    warehouse: WarehouseHook
    conn: Connection
    run_id: str
    now: dt.datetime
    seen: int = 0  # rows decided in this batch's failing chunks, for the share estimate
    bad: int = 0

    def attempt(self, items: list[_Item]) -> DBAPIError | None:
        return _try_upsert(self.warehouse, self.conn, items, run_id=self.run_id, now=self.now)

    def upsert(self, items: list[_Item]) -> tuple[list[_Item], list[tuple[_Item, DBAPIError]]]:
        """
        Upsert a chunk under a savepoint; when the database rejects a row, isolate the bad rows.

        :return: (items loaded, [(item rejected, its database error)])
        """
        error = self.attempt(items)
        if error is None:
            return items, []
        return self.run(items, error)

    def run(self, items: list[_Item], error: DBAPIError) -> tuple[list[_Item], list[tuple[_Item, DBAPIError]]]:
        """
        Find the bad rows of ``items`` (which failed together with ``error``).

        Groups sized by :func:`group_size` from the share of bad rows seen so far in the batch; a
        failing group is halved until one bad row is left (a passing first half means the bad row is
        in the other half, which is not tried as a whole); the rows after it go back to the pool.
        A single row is always tried on its own: no row is quarantined without a failure of its own.
        """
        loaded: list[_Item] = []
        rejected: list[tuple[_Item, DBAPIError]] = []
        share = max(self.bad, 1) / (self.seen + len(items))
        pool = list(items)
        known: DBAPIError | None = error  # the whole pool is known to fail with this
        while pool:
            group, rest = _split(pool, group_size(len(pool), share * len(pool)))
            failure = known if not rest and len(group) > 1 else self.attempt(group)
            known = None
            if failure is None:
                loaded += group
                pool = rest
                continue
            alone = len(group) == 1
            while len(group) > 1:  # one bad row of a failing group, by halves
                half, other = _split(group, len(group) // 2)
                half_failure = self.attempt(half)
                if half_failure is None:  # the bad row is in the other half: not tried as a whole
                    loaded += half
                    group, alone = other, False
                else:
                    group, failure, rest, alone = half, half_failure, other + rest, len(half) == 1
            if not alone:
                failure = self.attempt(group)
            if failure is None:  # it failed only together with other rows, and loaded on its own
                loaded += group
            else:
                rejected.append((group[0], failure))
                self.bad += 1
            pool = rest
        self.seen += len(items)
        return loaded, rejected


def _split(items: list[_Item], size: int) -> tuple[list[_Item], list[_Item]]:
    return items[:size], items[size:]


def _db_detail(exc: DBAPIError) -> str:
    message = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    return f"rejected by the database: {type(exc.orig).__name__}: {message}"


def _load_batch(warehouse: WarehouseHook, conn: Connection, *, run_id: str, dag_id: str, task_id: str, map_index: int,
                batch_size: int, chunk_size: int, max_quarantine_share: float) -> BatchResult:
    rows = _select_batch(conn, run_id=run_id, batch_size=batch_size)
    result = BatchResult(rows=len(rows))
    if not rows:
        return result
    now = dt.datetime.now(dt.UTC)
    by_file: dict[str, list[_Item]] = defaultdict(list)
    unknown: list[Quarantined] = []
    for row in rows:
        outcome, detail = decide(row)
        result.by_outcome[detail] += 1
        if outcome == "quarantined":
            what = f"postcode {row.postcode}" if detail == "unknown_postcode" else f"company {row.company_number}"
            source = "postcodes.io" if detail == "unknown_postcode" else "Companies House"
            unknown.append(Quarantined(row.source_file, row.line_number, row.raw_row, detail, f"{source} has no live {what}"))
            continue
        by_file[row.source_file].append(_Item(row, outcome, detail))
    quarantine_rows(conn, run_id=run_id, stage="load", rows=unknown)
    c = etl_checkpoints.c
    next_chunk = dict(
        conn.execute(
            select(c.source_file, func.max(c.chunk_index) + 1)
            .where(c.dag_id == dag_id, c.run_id == run_id, c.task_id == task_id, c.map_index == map_index)
            .group_by(c.source_file)
        ).all()
    )
    isolation = _Isolation(warehouse, conn, run_id, now)
    for source_file, items in by_file.items():
        for start in range(0, len(items), chunk_size):
            chunk = items[start : start + chunk_size]
            loaded, rejected = isolation.upsert(chunk)
            for outcome in ("loaded", "pending"):
                lines = [(i.row.source_file, i.row.line_number) for i in loaded if i.outcome == outcome]
                if lines:
                    set_lines_status(conn, run_id=run_id, lines=lines, status=outcome)
            quarantine_rows(
                conn, run_id=run_id, stage="load",
                rows=[Quarantined(i.row.source_file, i.row.line_number, i.row.raw_row, "rejected_by_database", _db_detail(e)) for i, e in rejected],
            )
            for item, _ in rejected:
                result.by_outcome[item.status] -= 1
                result.by_outcome["rejected_by_database"] += 1
            result.rejected_by_database += len(rejected)
            index = next_chunk.get(source_file, 0)
            next_chunk[source_file] = index + 1
            conn.execute(
                insert(etl_checkpoints).values(
                    dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, source_file=source_file,
                    chunk_index=index, first_line=chunk[0].row.line_number, last_line=chunk[-1].row.line_number,
                    rows=len(chunk), committed_at=now,
                )
            )
            result.chunks += 1
            chaos.inject("load.chunk")
    share = result.rejected_by_database / len(rows)
    if share > max_quarantine_share:
        raise QuarantineThresholdError(
            f"the database rejected {result.rejected_by_database} of {len(rows)} rows in a batch ({share:.1%}), "
            f"over the {max_quarantine_share:.1%} allowed: the batch was rolled back",
            rejected=result.rejected_by_database, rows=len(rows), threshold=max_quarantine_share,
        )
    return result


def load(
    warehouse: WarehouseHook,
    *,
    run_id: str,
    batch_size: int,
    chunk_size: int = 100,
    max_quarantine_share: float = 1.0,
    dag_id: str = "company_enrichment",
    task_id: str = "load",
    map_index: int = -1,
    retry_policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """
    Load the run's valid rows, ``batch_size`` per transaction and ``chunk_size`` per savepoint.

    A rerun picks up only rows still ``valid``: committed chunks are never loaded twice.

    :param warehouse: the warehouse hook
    :param run_id: the Airflow run id
    :param batch_size: rows per transaction
    :param chunk_size: rows per savepoint (and per checkpoint)
    :param max_quarantine_share: fail a batch when the database rejects more of its rows than this
    :param dag_id: checkpoint identity: the DAG
    :param task_id: checkpoint identity: the task
    :param map_index: checkpoint identity: the mapped task index
    :param retry_policy: how a batch that failed on a transient database error is retried
    :raises QuarantineThresholdError: a batch had too many rejected rows (it was rolled back)
    :raises ResilientEtlError: a typed critical database error, after retries when transient
    """
    retrier = Retrier(retry_policy or warehouse.retry_policy, logger=log)
    identity = {"dag_id": dag_id, "task_id": task_id, "map_index": map_index}

    def one_batch() -> BatchResult:
        try:
            with warehouse.begin() as conn:
                return _load_batch(
                    warehouse, conn, run_id=run_id, batch_size=batch_size, chunk_size=chunk_size,
                    max_quarantine_share=max_quarantine_share, **identity,
                )
        except DBAPIError as exc:
            raise db_error(exc) from exc

    total = BatchResult()
    batches = 0
    while True:
        result = retrier.call(one_batch)
        if not result.rows:
            break
        batches += 1
        total.rows += result.rows
        total.chunks += result.chunks
        total.by_outcome.update(result.by_outcome)
        total.rejected_by_database += result.rejected_by_database
        log.info("Committed load batch %s: %s rows in %s chunks %s", batches, result.rows, result.chunks, dict(result.by_outcome))
        chaos.inject("load.batch")
    return {
        "batches": batches,
        "chunks": total.chunks,
        "rows": total.rows,
        "rejected_by_database": total.rejected_by_database,
        "by_outcome": {k: v for k, v in total.by_outcome.items() if v},
    }
