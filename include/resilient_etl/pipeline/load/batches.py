"""The load loop: batches in transactions, chunks under savepoints, a checkpoint per chunk, retries per batch."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import DBAPIError

from resilient_etl.classification import db_error
from resilient_etl.config.models import RetryPolicy
from resilient_etl.exceptions import QuarantineThresholdError
from resilient_etl.hooks.warehouse.schema import etl_checkpoints, run_enrichment, staged_rows
from resilient_etl.pipeline import chaos
from resilient_etl.pipeline.load.decision import Item, Row, decide
from resilient_etl.pipeline.load.isolation import Isolation
from resilient_etl.pipeline.load.rules import Precheck
from resilient_etl.pipeline.load.statements import mark_loaded, raw_rows, select_batch, try_upsert
from resilient_etl.pipeline.staging import Quarantined, quarantine_rows, set_lines_status
from resilient_etl.resilience.retry import Retrier

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse import WarehouseHook

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What one committed batch did."""

    rows: int = 0
    chunks: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    rejected_by_database: int = 0
    ended_at: tuple[str, int] | None = None  # the (file, line) of its last row: where the next batch starts


def _db_detail(exc: DBAPIError) -> str:
    message = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    return f"rejected by the database: {type(exc.orig).__name__}: {message}"


def _quarantine(conn: Connection, run_id: str, entries: list[tuple[Row, str, str]]) -> None:
    """Quarantine staged rows (row, category, detail) with their raw text, read for them alone."""
    by_file: dict[str, list[tuple[Row, str, str]]] = defaultdict(list)
    for entry in entries:
        by_file[entry[0].source_file].append(entry)
    for source_file, some in by_file.items():
        raw = raw_rows(conn, run_id=run_id, source_file=source_file, lines=[r.line_number for r, _, _ in some])
        quarantine_rows(
            conn, run_id=run_id, stage="load", rows=[Quarantined(source_file, r.line_number, raw[r.line_number], c, d) for r, c, d in some]
        )


def _set_aside(conn: Connection, run_id: str, split: tuple[list[Item], list[tuple[Item, str]]], rejected: list[tuple[Item, str]]) -> list[Item]:
    """Quarantine the rows a chunk sets aside at once (so its range statement leaves them out); return those kept."""
    kept, why = split
    _quarantine(conn, run_id, [(i.row, "rejected_by_database", w) for i, w in why])
    rejected.extend(why)
    return kept


def _load_batch(
    warehouse: WarehouseHook,
    conn: Connection,
    *,
    run_id: str,
    dag_id: str,
    task_id: str,
    map_index: int,
    batch_size: int,
    chunk_size: int,
    max_quarantine_share: float,
    committed_by: dict[str, Any],
    precheck: Precheck,
    after: tuple[str, int] | None,
) -> BatchResult:
    rows = select_batch(conn, run_id=run_id, batch_size=batch_size, after=after)
    result = BatchResult(rows=len(rows))
    if not rows:
        return result
    result.ended_at = (rows[-1].source_file, rows[-1].line_number)
    now = dt.datetime.now(dt.UTC)
    by_file: dict[str, list[Item]] = defaultdict(list)
    unknown: list[tuple[Row, str, str]] = []
    for row in rows:
        outcome, detail = decide(row)
        result.by_outcome[detail] += 1
        if outcome == "quarantined":
            what = f"postcode {row.postcode}" if detail == "unknown_postcode" else f"company {row.company_number}"
            source = "postcodes.io" if detail == "unknown_postcode" else "Companies House"
            unknown.append((row, detail, f"{source} has no live {what}"))
            continue
        by_file[row.source_file].append(Item(row, outcome, detail))
    _quarantine(conn, run_id, unknown)
    c = etl_checkpoints.c
    next_chunk = dict(
        conn.execute(
            select(c.source_file, func.max(c.chunk_index) + 1)
            .where(c.dag_id == dag_id, c.run_id == run_id, c.task_id == task_id, c.map_index == map_index)
            .group_by(c.source_file)
        ).all()
    )
    isolation = Isolation(warehouse, conn, run_id, now)
    for source_file, items in by_file.items():
        for start in range(0, len(items), chunk_size):
            chunk = items[start : start + chunk_size]
            first, last, covered = chunk[0].row.line_number, chunk[-1].row.line_number, len(chunk)
            params = {"run_id": run_id, "source_file": source_file, "first_line": first, "last_line": last, "loaded_at": now}
            rejected: list[tuple[Item, str]] = []
            checked = precheck.active
            if checked:
                chunk = _set_aside(conn, run_id, precheck.set_aside(conn, chunk, params), rejected)
            error = try_upsert(warehouse, conn, params) if chunk else None
            if error is not None and not checked and precheck.arm(conn):  # this load's first failure: check first from now on
                before = len(rejected)
                chunk = _set_aside(conn, run_id, precheck.set_aside(conn, chunk, params), rejected)
                error = try_upsert(warehouse, conn, params) if chunk and len(rejected) > before else error
            if error is not None:  # only the database knows why: trials
                chunk, refused = isolation.run(chunk, error)
                _set_aside(conn, run_id, ([], [(i, _db_detail(e)) for i, e in refused]), rejected)
            pending = [(source_file, i.row.line_number) for i in chunk if i.outcome == "pending"]
            if pending:
                set_lines_status(conn, run_id=run_id, lines=pending, status="pending")
            mark_loaded(conn, run_id=run_id, source_file=source_file, first_line=first, last_line=last)
            for item, _ in rejected:
                result.by_outcome[item.status] -= 1
                result.by_outcome["rejected_by_database"] += 1
            result.rejected_by_database += len(rejected)
            index = next_chunk.get(source_file, 0)
            next_chunk[source_file] = index + 1
            conn.execute(
                insert(etl_checkpoints).values(
                    dag_id=dag_id,
                    run_id=run_id,
                    task_id=task_id,
                    map_index=map_index,
                    source_file=source_file,
                    chunk_index=index,
                    first_line=first,
                    last_line=last,
                    rows=covered,
                    committed_at=now,
                    **committed_by,
                )
            )
            result.chunks += 1
            chaos.inject("load.chunk")
    share = result.rejected_by_database / len(rows)
    if share > max_quarantine_share:
        raise QuarantineThresholdError(
            f"the database rejected {result.rejected_by_database} of {len(rows)} rows in a batch ({share:.1%}), "
            f"over the {max_quarantine_share:.1%} allowed: the batch was rolled back",
            rejected=result.rejected_by_database,
            rows=len(rows),
            threshold=max_quarantine_share,
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
    hostname: str | None = None,
    try_number: int | None = None,
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
    :param hostname: the worker loading (kept with each checkpoint: a resumed load shows where each chunk went)
    :param try_number: the task try loading (kept with each checkpoint)
    :raises QuarantineThresholdError: a batch had too many rejected rows (it was rolled back)
    :raises ResilientEtlError: a typed critical database error, after retries when transient
    """
    retrier = Retrier(retry_policy or warehouse.retry_policy, logger=log)
    identity = {"dag_id": dag_id, "task_id": task_id, "map_index": map_index}
    precheck = Precheck()

    def refresh_statistics() -> None:
        # extract, validate and enrich have just written these: without statistics PostgreSQL's planner
        # joined each staged row to every answer of its kind (10,000 rows loaded in 31 s, not 3)
        try:
            with warehouse.begin() as conn:
                warehouse.refresh_statistics(conn, [staged_rows, run_enrichment])
        except DBAPIError as exc:
            raise db_error(exc) from exc

    retrier.call(refresh_statistics)

    def one_batch() -> BatchResult:
        try:
            with warehouse.begin() as conn:
                return _load_batch(
                    warehouse,
                    conn,
                    run_id=run_id,
                    batch_size=batch_size,
                    chunk_size=chunk_size,
                    max_quarantine_share=max_quarantine_share,
                    committed_by={"hostname": hostname, "try_number": try_number},
                    precheck=precheck,
                    after=after,
                    **identity,
                )
        except DBAPIError as exc:
            raise db_error(exc) from exc

    total = BatchResult()
    batches = 0
    after: tuple[str, int] | None = None
    while True:
        result = retrier.call(one_batch)
        if not result.rows:
            break
        batches += 1
        after = result.ended_at
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
