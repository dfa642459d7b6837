"""Reconcile: prove rows_in = loaded + quarantined + pending, record the run, archive its files."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from resilient_etl.errors import ReconciliationError
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.schema import pipeline_runs, quarantine, staged_rows

log = logging.getLogger(__name__)


def count_run(warehouse: WarehouseHook, run_id: str) -> tuple[dict[str, int], list[str], list[dict[str, str]]]:
    """Return the run's staged-row counts by status, the files it staged and the files it rejected."""
    s, q = staged_rows, quarantine
    with warehouse.begin() as conn:
        by_status = dict(
            conn.execute(select(s.c.status, func.count()).where(s.c.run_id == run_id).group_by(s.c.status)).all()
        )
        files = sorted(conn.execute(select(s.c.source_file).distinct().where(s.c.run_id == run_id)).scalars())
        rejected = [
            {"file": r.source_file, "reason": r.detail}
            for r in conn.execute(select(q.c.source_file, q.c.detail).where(q.c.run_id == run_id, q.c.stage == "extract"))
        ]
    return by_status, files, rejected


def reconcile(
    warehouse: WarehouseHook,
    *,
    run_id: str,
    dag_id: str,
    landing_dir: Path,
    archive_dir: Path,
) -> dict[str, Any]:
    """
    Check the run's counts, record them in ``pipeline_runs`` and archive its files.

    :param warehouse: the warehouse hook
    :param run_id: the Airflow run id
    :param dag_id: the DAG id
    :param landing_dir: where the run's files are
    :param archive_dir: where they go after a successful run
    :raises ReconciliationError: rows unaccounted for; the run is recorded as failed, files stay put
    """
    by_status, files, rejected = count_run(warehouse, run_id)
    counts = {
        "rows_in": sum(by_status.values()),
        "rows_loaded": by_status.get("loaded", 0),
        "rows_quarantined": by_status.get("quarantined", 0),
        "rows_pending": by_status.get("pending", 0),
    }
    unaccounted = counts["rows_in"] - counts["rows_loaded"] - counts["rows_quarantined"] - counts["rows_pending"]
    status = "success" if unaccounted == 0 else "failed"
    summary = {"run_id": run_id, "dag_id": dag_id, "files": files, **counts, "status": status, "rejected_files": rejected}
    with warehouse.begin() as conn:
        warehouse.upsert(
            conn,
            pipeline_runs,
            [
                {
                    "run_id": run_id, "dag_id": dag_id, "files": json.dumps(files), **counts, "status": status,
                    "summary": json.dumps(summary, default=str), "finished_at": dt.datetime.now(dt.UTC),
                }
            ],
            ["run_id"],
        )
    if unaccounted:
        raise ReconciliationError(
            f"run {run_id}: {unaccounted} rows neither loaded, quarantined nor pending ({by_status})", counts=counts
        )
    archived = archive_files(files, landing_dir=landing_dir, archive_dir=archive_dir, run_id=run_id)
    summary["archived"] = [str(p) for p in archived]
    log.info(
        "Run %s reconciled: %s in = %s loaded + %s quarantined + %s pending",
        run_id, counts["rows_in"], counts["rows_loaded"], counts["rows_quarantined"], counts["rows_pending"],
    )
    return summary


def archive_files(files: list[str], *, landing_dir: Path, archive_dir: Path, run_id: str) -> list[Path]:
    """Move the run's files from landing to ``archive_dir/<run id>/``; files already moved are skipped."""
    target_dir = archive_dir / "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    moved = []
    for name in files:
        source = landing_dir / name
        if source.exists():
            target_dir.mkdir(parents=True, exist_ok=True)
            moved.append(Path(shutil.move(str(source), target_dir / name)))
    return moved
