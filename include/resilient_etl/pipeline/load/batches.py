"""
The load loop: batches in transactions, savepoints with a checkpoint each, retries per batch.

A batch's lines of one file are first tried as one chunk, one statement (the database's own ceiling
for them); only when that fails are they loaded ``chunk_size`` lines at a time, each chunk under its
own savepoint, and only a failing chunk's lines are tried further (ADR 0016).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import DBAPIError

from resilient_etl.config.models import RetryPolicy
from resilient_etl.exceptions import QuarantineThresholdError
from resilient_etl.hooks.warehouse.schema import etl_checkpoints
from resilient_etl.pipeline import chaos
from resilient_etl.pipeline.load.decision import Item, Row, decide
from resilient_etl.pipeline.load.isolation import Isolation
from resilient_etl.pipeline.load.rules import Precheck
from resilient_etl.pipeline.load.statements import raw_rows, spans, try_upsert, unknown_keys, valid_lines
from resilient_etl.pipeline.staging import Quarantined, quarantine_rows
from resilient_etl.resilience.retry import Retrier

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse import WarehouseHook

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What one committed batch did."""

    rows: int = 0  # loaded
    chunks: int = 0
    rejected_by_database: int = 0


@dataclass(frozen=True)
class Chunk:
    """A range of one file's staged lines, loaded under one savepoint with one checkpoint."""

    source_file: str
    first_line: int
    last_line: int


def plan(spans: list[tuple[str, int, int]], *, chunk_size: int, batch_size: int) -> list[list[Chunk]]:
    """
    Cut the files' spans of valid lines into batches of ``batch_size`` lines, and each into chunks of ``chunk_size`` (pure).

    A batch runs on into the next file as the rows of a batch used to; a chunk stays in one file and
    one batch. Lines, not rows: a line quarantined at validate is a gap, so a chunk holds at most
    ``chunk_size`` rows.
    """
    batches: list[list[Chunk]] = [[]]
    room = batch_size
    for source_file, first, last in spans:
        line = first
        while line <= last:
            take = min(room, last - line + 1)
            for start in range(line, line + take, chunk_size):
                batches[-1].append(Chunk(source_file, start, min(start + chunk_size, line + take) - 1))
            line, room = line + take, room - take
            if room == 0:
                batches.append([])
                room = batch_size
    return [b for b in batches if b]


def _db_detail(exc: DBAPIError) -> str:
    message = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    return f"rejected by the database: {type(exc.orig).__name__}: {message}"


def _quarantine(conn: Connection, run_id: str, entries: list[tuple[Any, str, str]]) -> None:
    """Quarantine staged rows (row, category, detail) with their raw text, read for them alone."""
    by_file: dict[str, list[tuple[Any, str, str]]] = defaultdict(list)
    for entry in entries:
        by_file[entry[0].source_file].append(entry)
    for source_file, some in by_file.items():
        raw = raw_rows(conn, run_id=run_id, source_file=source_file, lines=[r.line_number for r, _, _ in some])
        quarantine_rows(
            conn, run_id=run_id, stage="load", rows=[Quarantined(source_file, r.line_number, raw[r.line_number], c, d) for r, c, d in some]
        )


def _quarantine_unknown(conn: Connection, run_id: str) -> Counter[str]:
    """Quarantine the rows whose postcode or company an API said does not exist; return how many of each."""
    unknown: list[tuple[Row, str, str]] = []
    for row in unknown_keys(conn, run_id=run_id):
        _, detail = decide(row)
        what = f"postcode {row.postcode}" if detail == "unknown_postcode" else f"company {row.company_number}"
        source = "postcodes.io" if detail == "unknown_postcode" else "Companies House"
        unknown.append((row, detail, f"{source} has no live {what}"))
    _quarantine(conn, run_id, unknown)
    return Counter(detail for _, detail, _ in unknown)


@dataclass
class _Checked:
    """How far the catalog's rules have been checked in each file, and to where a check reaches (the batch's end)."""

    until: dict[str, int]
    reach: dict[str, int]


def _load_chunk(
    warehouse: WarehouseHook,
    conn: Connection,
    chunk: Chunk,
    params: dict[str, Any],
    precheck: Precheck,
    isolation: Isolation | None,
    checked: _Checked,
) -> tuple[int | None, list[tuple[Item, str]]]:
    """
    Load one chunk under savepoints; return the rows it wrote and those it quarantined (with why).

    A clean chunk is one statement: its rows are read only when it fails. Once the catalog's rules
    are checked, one query checks them from this chunk to the batch's end in the file (not once per
    chunk: each check is a pass over the answers), and only the lines breaking one are read. Without
    ``isolation`` a chunk the database still refuses is left unloaded: written is then None (the
    rows quarantined for a rule of the catalog stay quarantined).
    """
    rejected: list[tuple[Item, str]] = []
    source_file = chunk.source_file

    def set_aside() -> bool:
        """Quarantine the rule breakers from this chunk to the batch's end; return whether this chunk had any."""
        reach = checked.reach[source_file]
        broken = precheck.set_aside(conn, {**params, "last_line": reach})
        checked.until[source_file] = reach
        entries = [(Item(Row.line(source_file, line)), why) for line, why in broken.items()]
        _quarantine(conn, params["run_id"], [(i.row, "rejected_by_database", w) for i, w in entries])
        rejected.extend(entries)
        return any(line <= chunk.last_line for line in broken)

    covered = precheck.active and checked.until.get(source_file, 0) >= chunk.last_line
    if precheck.active and not covered:
        set_aside()
        covered = True
    outcome = try_upsert(warehouse, conn, params)
    if isinstance(outcome, DBAPIError) and not covered and precheck.arm(conn):  # this load's first failure: check first from now on
        outcome = try_upsert(warehouse, conn, params) if set_aside() else outcome
    if not isinstance(outcome, DBAPIError):
        return outcome, rejected
    if isolation is None:
        return None, rejected
    # only the database knows why: trials over the chunk's lines
    loaded, refused = isolation.run([Item(r) for r in valid_lines(conn, params)], outcome)
    entries = [(i, _db_detail(e)) for i, e in refused]
    _quarantine(conn, params["run_id"], [(i.row, "rejected_by_database", w) for i, w in entries])
    return len(loaded), rejected + entries


def _load_batch(
    warehouse: WarehouseHook,
    conn: Connection,
    chunks: list[Chunk],
    *,
    run_id: str,
    dag_id: str,
    task_id: str,
    map_index: int,
    max_quarantine_share: float,
    committed_by: dict[str, Any],
    precheck: Precheck,
) -> BatchResult:
    result = BatchResult()
    now = dt.datetime.now(dt.UTC)
    c = etl_checkpoints.c
    identity = (c.dag_id == dag_id, c.run_id == run_id, c.task_id == task_id, c.map_index == map_index)
    # re-read in the transaction: a chunk another try committed since the plan was made is not loaded twice
    done = {
        f: (last, index)
        for f, last, index in conn.execute(
            select(c.source_file, func.max(c.last_line), func.max(c.chunk_index) + 1).where(*identity).group_by(c.source_file)
        )
    }
    isolation = Isolation(warehouse, conn, run_id, now)
    checked = _Checked(until={}, reach={c.source_file: c.last_line for c in chunks})  # the last chunk of a file in the batch wins
    todo: list[Chunk] = []
    for planned in chunks:
        last_done = done.get(planned.source_file, (0, 0))[0]
        if planned.last_line > last_done:
            # a rerun with another chunk size starts after the last committed line, not at its own chunk's start
            todo.append(Chunk(planned.source_file, max(planned.first_line, last_done + 1), planned.last_line))

    def params_of(chunk: Chunk) -> dict[str, Any]:
        return {"run_id": run_id, "source_file": chunk.source_file, "first_line": chunk.first_line, "last_line": chunk.last_line, "loaded_at": now}

    def checkpoint(chunk: Chunk, written: int, rejected: int) -> None:
        result.rows += written
        result.rejected_by_database += rejected
        if written or rejected:
            next_index = done.get(chunk.source_file, (0, 0))[1]
            conn.execute(
                insert(etl_checkpoints).values(
                    dag_id=dag_id,
                    run_id=run_id,
                    task_id=task_id,
                    map_index=map_index,
                    source_file=chunk.source_file,
                    chunk_index=next_index,
                    first_line=chunk.first_line,
                    last_line=chunk.last_line,
                    rows=written,
                    committed_at=now,
                    **committed_by,
                )
            )
            done[chunk.source_file] = (chunk.last_line, next_index + 1)
            result.chunks += 1

    for source_file in dict.fromkeys(c.source_file for c in todo):
        planned = [c for c in todo if c.source_file == source_file]
        whole = Chunk(source_file, planned[0].first_line, planned[-1].last_line)
        # the file's lines of this batch in one statement; a per-chunk savepoint buys nothing while they load:
        # nothing commits before the batch does
        written, rejected = _load_chunk(warehouse, conn, whole, params_of(whole), precheck, None, checked)
        if written is not None:
            checkpoint(whole, written, len(rejected))
            for _ in planned:  # a chaos point stays one per planned chunk (drills time their faults by it)
                chaos.inject("load.chunk")
            continue
        result.rejected_by_database += len(rejected)  # set aside by the catalog's rules before the whole failed
        for chunk in planned:
            written, rejected = _load_chunk(warehouse, conn, chunk, params_of(chunk), precheck, isolation, checked)
            checkpoint(chunk, written or 0, len(rejected))
            chaos.inject("load.chunk")
    share = result.rejected_by_database / max(result.rows + result.rejected_by_database, 1)
    if share > max_quarantine_share:
        raise QuarantineThresholdError(
            f"the database rejected {result.rejected_by_database} of {result.rows + result.rejected_by_database} rows in a batch ({share:.1%}), "
            f"over the {max_quarantine_share:.1%} allowed: the batch was rolled back",
            rejected=result.rejected_by_database,
            rows=result.rows + result.rejected_by_database,
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
    Load the run's valid rows, ``batch_size`` lines per transaction and ``chunk_size`` lines per savepoint.

    A rerun starts after the last line this task committed (its checkpoints): committed chunks are
    never loaded twice. A loaded row's status is not written: :func:`.statements.row_statuses`
    derives it from the checkpoints.

    :param warehouse: the warehouse hook
    :param run_id: the Airflow run id
    :param batch_size: staged lines per transaction
    :param chunk_size: staged lines per savepoint (and per checkpoint)
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
    unknown = retrier.call(warehouse.transact, lambda conn: _quarantine_unknown(conn, run_id))
    batches = retrier.call(warehouse.transact, lambda conn: plan(spans(conn, run_id=run_id), chunk_size=chunk_size, batch_size=batch_size))
    committed_by = {"hostname": hostname, "try_number": try_number}

    def one_batch(conn: Connection, chunks: list[Chunk]) -> BatchResult:
        return _load_batch(
            warehouse,
            conn,
            chunks,
            run_id=run_id,
            max_quarantine_share=max_quarantine_share,
            committed_by=committed_by,
            precheck=precheck,
            **identity,
        )

    total = BatchResult()
    for number, chunks in enumerate(batches, start=1):
        result = retrier.call(warehouse.transact, one_batch, chunks)
        total.rows += result.rows
        total.chunks += result.chunks
        total.rejected_by_database += result.rejected_by_database
        log.info(
            "Committed load batch %s of %s: %s rows loaded in %s chunks, %s rejected by the database",
            number,
            len(batches),
            result.rows,
            result.chunks,
            result.rejected_by_database,
        )
        chaos.inject("load.batch")
    return {
        "batches": len(batches),
        "chunks": total.chunks,
        "rows": total.rows,
        "rejected_by_database": total.rejected_by_database,
        "by_outcome": {k: v for k, v in {"loaded": total.rows, **unknown, "rejected_by_database": total.rejected_by_database}.items() if v},
    }
