"""Reconcile: prove rows_in = loaded + quarantined + pending, record the run, archive its files."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select

from resilient_etl.exceptions import DataQualityError, ReconciliationError
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import pipeline_runs, quality_results, quarantine, staged_rows
from resilient_etl.pipeline.files import archive_files, is_replay
from resilient_etl.pipeline.load.statements import row_statuses

log = logging.getLogger(__name__)


def count_run(warehouse: WarehouseHook, run_id: str) -> tuple[dict[str, int], list[str], list[dict[str, str]], dict[str, list[str]]]:
    """
    Return the run's staged-row counts by status (a loaded row's derived from the checkpoints), the files it loads, the files extract rejected and
    the files the quality gate rejected (with the rules they failed).
    """
    s, q, r = staged_rows, quarantine, quality_results
    with warehouse.begin() as conn:
        by_status = row_statuses(conn, run_id=run_id)
        files = sorted(conn.execute(select(s.c.source_file).distinct().where(s.c.run_id == run_id, s.c.status != "rejected")).scalars())
        unreadable = [
            {"file": row.source_file, "reason": row.detail}
            for row in conn.execute(select(q.c.source_file, q.c.detail).where(q.c.run_id == run_id, q.c.stage == "extract"))
        ]
        failed_quality: dict[str, list[str]] = {}
        for row in conn.execute(select(r.c.source_file, r.c.rule).where(r.c.run_id == run_id, r.c.verdict == "fail").order_by(r.c.rule)):
            if not is_replay(row.source_file):  # a replay's failed rules quarantined its rows, not the file
                failed_quality.setdefault(row.source_file, []).append(row.rule)
    return by_status, files, unreadable, failed_quality


def reconcile(warehouse: WarehouseHook, *, run_id: str, dag_id: str, landing_dir: Path, archive_dir: Path) -> dict[str, Any]:
    """
    Check the run's counts, record them in ``pipeline_runs`` and archive its files.

    :param warehouse: the warehouse hook
    :param run_id: the Airflow run id
    :param dag_id: the DAG id
    :param landing_dir: where the run's files are
    :param archive_dir: where they go after a successful run
    :raises ReconciliationError: rows unaccounted for; the run is recorded as failed, files stay put
    :raises DataQualityError: a file failed the quality gate (the others were loaded and archived)
    """
    by_status, files, rejected, failed_quality = count_run(warehouse, run_id)
    rows_in_rejected_files = by_status.pop("rejected", 0)
    counts = {
        "rows_in": sum(by_status.values()),
        "rows_loaded": by_status.get("loaded", 0),
        "rows_quarantined": by_status.get("quarantined", 0),
        "rows_pending": by_status.get("pending", 0),
    }
    unaccounted = counts["rows_in"] - counts["rows_loaded"] - counts["rows_quarantined"] - counts["rows_pending"]
    status = "failed" if unaccounted else "quality_failed" if failed_quality else "success"
    summary = {
        "run_id": run_id,
        "dag_id": dag_id,
        "files": files,
        **counts,
        "status": status,
        "rejected_files": rejected,
        "quality_failed_files": failed_quality,
        "rows_in_quality_failed_files": rows_in_rejected_files,
    }
    with warehouse.begin() as conn:
        warehouse.upsert(
            conn,
            pipeline_runs,
            [
                {
                    "run_id": run_id,
                    "dag_id": dag_id,
                    "files": json.dumps(files),
                    **counts,
                    "status": status,
                    "summary": json.dumps(summary, default=str),
                    "finished_at": dt.datetime.now(dt.UTC),
                }
            ],
            ["run_id"],
        )
    if unaccounted:
        raise ReconciliationError(f"run {run_id}: {unaccounted} rows neither loaded, quarantined nor pending ({by_status})", counts=counts)
    archived = archive_files(files, landing_dir=landing_dir, archive_dir=archive_dir, run_id=run_id)
    summary["archived"] = [str(p) for p in archived]
    log.info(
        "Run %s reconciled: %s in = %s loaded + %s quarantined + %s pending",
        run_id,
        counts["rows_in"],
        counts["rows_loaded"],
        counts["rows_quarantined"],
        counts["rows_pending"],
    )
    if failed_quality:
        raise DataQualityError(
            f"run {run_id}: {len(failed_quality)} file(s) failed the data-quality gate and were not loaded: "
            + "; ".join(f"{f} ({', '.join(rules)})" for f, rules in failed_quality.items()),
            files=failed_quality,
        )
    return summary
