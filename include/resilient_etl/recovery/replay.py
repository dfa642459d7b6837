"""
Put data back through the pipeline after its cause is fixed: quarantined rows (written back to
landing as a replay file), rejected files (moved back to landing), and, after a restore, the archived
files of runs the restored warehouse does not have (copied back: the archive keeps them).

Each puts files into landing and records an override; the next run of ``company_enrichment`` takes
them through validate, enrich and load. A row is replayed once: its quarantine row remembers the
replay file, and a second replay of the same selection finds nothing. The load upserts on
``supplier_id``, so a supplier already loaded is updated, never doubled.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, update

from resilient_etl.hooks.warehouse.schema import as_utc, pipeline_runs, quarantine
from resilient_etl.pipeline import overrides
from resilient_etl.pipeline.files import QUALITY_SUFFIX, REASON_SUFFIX, REPLAY_PREFIX, SIDECARS, run_folder_name
from resilient_etl.pipeline.validate import CSV_COLUMNS

REDERIVE = "rederive-from-archive"


def _selection(run_id: str | None, reason: str | None) -> list[Any]:
    """Return the WHERE terms picking one run's quarantine (and one reason), or everything."""
    q = quarantine.c
    return ([q.run_id == run_id] if run_id else []) + ([q.error_category == reason] if reason else [])


def quarantine_summary(conn: Connection, *, run_id: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
    """Return the quarantine grouped by run, stage and reason: rows, replayed, waiting."""
    q = quarantine.c
    query = (
        select(
            q.run_id, q.stage, q.error_category, func.count().label("rows"), func.count(q.replayed_at).label("replayed"), func.min(q.quarantined_at)
        )
        .where(*_selection(run_id, reason))
        .group_by(q.run_id, q.stage, q.error_category)
        .order_by(func.min(q.quarantined_at), q.run_id, q.error_category)
    )
    return [
        {
            "run_id": r.run_id,
            "stage": r.stage,
            "reason": r.error_category,
            "rows": r.rows,
            "replayed": r.replayed,
            "waiting": r.rows - r.replayed,
            "first_at": as_utc(r[5]).isoformat(timespec="seconds"),
        }
        for r in conn.execute(query)
    ]


def quarantine_rows(
    conn: Connection, *, run_id: str | None = None, reason: str | None = None, limit: int = 1000, raw: bool = False
) -> list[dict[str, Any]]:
    """
    Return quarantined rows one by one (file, line, reason, detail, replay).

    :param raw: add each row as it was read (``raw_row``, JSON of the CSV fields; empty for an unreadable line)
    """
    q = quarantine.c
    query = select(quarantine).where(*_selection(run_id, reason)).order_by(q.run_id, q.source_file, q.line_number).limit(limit)
    return [
        {
            "id": r.id,
            "run_id": r.run_id,
            "file": r.source_file,
            "line": r.line_number,
            "reason": r.error_category,
            "detail": r.detail,
            "replayed_to": r.replay_file or "",
            **({"raw_row": r.raw_row} if raw else {}),
        }
        for r in conn.execute(query)
    ]


@dataclass(frozen=True)
class Replay:
    """What one replay wrote: the file in landing, its rows, the rows it could not take, the override."""

    file: Path | None
    rows: int
    not_replayable: int
    already_replayed: int
    override_id: int | None


def replay_quarantine(
    conn: Connection, *, landing_dir: Path, run_id: str, reason: str | None, why: str, by: str | None = None, now: dt.datetime | None = None
) -> Replay:
    """
    Write the quarantined rows of ``run_id`` (of one ``reason``, or all) not yet replayed to a new CSV in ``landing_dir``.

    The rows are marked replayed in the same transaction that records the override; the file is
    written first under a temporary name and renamed, so a failure leaves either nothing or a whole
    file, and the rows stay unreplayed unless the transaction commits.

    :param conn: a warehouse connection in a transaction
    :param run_id: the run whose quarantine is replayed
    :param reason: the error category to replay (None: every category)
    :param why: why now (what was fixed), kept with the override
    """
    now = now or dt.datetime.now(dt.UTC)
    q = quarantine.c
    where = _selection(run_id, reason)
    already = conn.execute(select(func.count()).select_from(quarantine).where(*where, q.replayed_at.is_not(None))).scalar_one()
    rows = conn.execute(select(q.id, q.raw_row).where(*where, q.replayed_at.is_(None)).order_by(q.source_file, q.line_number)).all()
    replayable = [(r.id, json.loads(r.raw_row)) for r in rows if r.raw_row]
    not_replayable = len(rows) - len(replayable)  # an unreadable line kept no row to replay
    if not replayable:
        return Replay(None, 0, not_replayable, already, None)
    name = f"{REPLAY_PREFIX}{run_folder_name(run_id)}-{reason or 'all'}-{now:%Y%m%dT%H%M%S%f}.csv"
    landing_dir.mkdir(parents=True, exist_ok=True)
    partial = landing_dir / f".{name}.partial"
    with partial.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for _, raw in replayable:
            writer.writerow({c: raw.get(c, "") for c in CSV_COLUMNS})
    ids = [i for i, _ in replayable]
    for start in range(0, len(ids), 500):
        conn.execute(update(quarantine).where(q.id.in_(ids[start : start + 500])).values(replayed_at=now, replay_file=name))
    record = overrides.record(
        conn,
        "quarantine-replay",
        run_id,
        reason=why,
        by=by,
        now=now,
        details={"reason": reason or "all", "rows": len(ids), "file": name, "not_replayable": not_replayable},
    )
    os.replace(partial, landing_dir / name)  # last: the rows are marked in this transaction, committed by the caller
    return Replay(landing_dir / name, len(ids), not_replayable, already, record.id)


def rejected_files(rejected_dir: Path) -> list[dict[str, Any]]:
    """Return the files in ``rejected_dir`` with their reason, size and when they were rejected."""
    if not rejected_dir.is_dir():
        return []
    out = []
    for path in sorted(rejected_dir.iterdir()):
        if not path.is_file() or path.name.endswith(SIDECARS) or path.name.startswith("."):
            continue
        reason_file = path.with_name(path.name + REASON_SUFFIX)
        reason = reason_file.read_text(encoding="utf-8").strip() if reason_file.exists() else "(no reason recorded)"
        report = path.with_name(path.name + QUALITY_SUFFIX)
        stat = path.stat()
        out.append(
            {
                "file": path.name,
                "bytes": stat.st_size,
                "rejected_at": dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).isoformat(timespec="seconds"),
                "reason": reason.splitlines()[0] if reason else "",
                "report": report.name if report.exists() else "",
            }
        )
    return out


def requeue_rejected(conn: Connection, *, name: str, rejected_dir: Path, landing_dir: Path, why: str, by: str | None = None) -> Path:
    """
    Move a rejected file back to landing for the next run; its reason moves to ``rejected/.requeued/``.

    :param name: the file's name in ``rejected_dir``
    :raises FileNotFoundError: no such rejected file (the message lists what there is)
    :raises FileExistsError: landing already holds a file of that name
    """
    source = rejected_dir / Path(name).name
    if not source.is_file() or source.name.endswith(SIDECARS):
        there = ", ".join(f["file"] for f in rejected_files(rejected_dir)) or "none"
        raise FileNotFoundError(f"no rejected file {name!r} in {rejected_dir} (rejected files: {there})")
    target = landing_dir / source.name
    if target.exists():
        raise FileExistsError(f"{target} exists: landing already has a file of that name")
    reason_file = source.with_name(source.name + REASON_SUFFIX)
    reason = reason_file.read_text(encoding="utf-8").strip() if reason_file.exists() else ""
    overrides.record(conn, "rejected-requeue", source.name, reason=why, by=by, details={"rejected_because": reason, "to": str(target)})
    landing_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), target)
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    for sidecar in (source.with_name(source.name + suffix) for suffix in SIDECARS):
        if sidecar.exists():  # kept for the record, out of the listing
            kept = rejected_dir / ".requeued"
            kept.mkdir(exist_ok=True)
            shutil.move(str(sidecar), kept / f"{sidecar.name}.{stamp}")
    return target


def rederive_from_archive(conn: Connection, *, archive_dir: Path, landing_dir: Path, why: str, by: str | None = None) -> list[Path]:
    """
    Copy back to landing the archived files of every run the warehouse has no ``pipeline_runs`` row for.

    After a restore, the runs committed after the backup are missing; their source files are still in
    the archive (it is append-only), so the next run loads them again. Nothing is doubled: the load
    upserts on ``supplier_id``. A run folder copied back once (an earlier override in this warehouse)
    is not copied again.
    """
    known = {run_folder_name(r) for r in conn.execute(select(pipeline_runs.c.run_id)).scalars()}
    known |= {run for o in overrides.history(conn, action=REDERIVE, limit=1000) for run in o.details.get("runs", [])}
    copied: list[Path] = []
    if not archive_dir.is_dir():
        return copied
    landing_dir.mkdir(parents=True, exist_ok=True)
    runs = sorted(p for p in archive_dir.iterdir() if p.is_dir() and p.name not in known)
    for run_dir in runs:
        for source in sorted(run_dir.glob("*")):
            if not source.is_file():
                continue
            target = landing_dir / source.name
            if target.exists():
                target = landing_dir / f"{source.stem}.{run_dir.name}{source.suffix}"
            shutil.copy2(source, target)
            copied.append(target)
    if copied:
        details = {"runs": [r.name for r in runs], "files": [p.name for p in copied]}
        overrides.record(conn, REDERIVE, str(archive_dir), reason=why, by=by, details=details)
    return copied
