"""
Load: upsert the run's enriched rows into ``suppliers``; rows whose postcode or company does not exist
go to quarantine. Each batch (rows, quarantine records and staged statuses) commits as one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from resilient_etl.enrichment import company_columns, postcode_columns
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.staging import Quarantined, quarantine_rows, set_status
from resilient_etl.schema import company_cache, postcode_cache, staged_rows, suppliers

log = logging.getLogger(__name__)


def _decide(row: Any, run_id: str) -> tuple[str, str | None]:
    """Return (outcome, reason): ``loaded``/``pending`` with an enrichment status, or ``quarantined``."""
    if row.pc_found is False:
        return "quarantined", "unknown_postcode"
    if row.co_found is False:
        return "quarantined", "unknown_company"
    if row.pc_found is None or row.co_found is None:
        return "pending", "pending"
    return "loaded", "live" if row.pc_run == run_id and row.co_run == run_id else "cached"


def supplier_record(clean: dict[str, Any], *, postcode: Any, company: Any, status: str, row: Any, run_id: str,
                    now: dt.datetime) -> dict[str, Any]:
    """Return the ``suppliers`` row for a clean record and its enrichment."""
    return {
        "supplier_id": clean["supplier_id"],
        "company_number": clean["company_number"],
        "company_name": clean["company_name"],
        "address_line_1": clean["address_line_1"],
        "town": clean["town"],
        "postcode": clean["postcode"],
        "annual_spend_gbp": Decimal(clean["annual_spend_gbp"]) if clean["annual_spend_gbp"] is not None else None,
        "onboarded_on": dt.date.fromisoformat(clean["onboarded_on"]) if clean["onboarded_on"] else None,
        **postcode_columns(postcode),
        **company_columns(company),
        "enrichment_status": status,
        "source_file": row.source_file,
        "source_line": row.line_number,
        "run_id": run_id,
        "loaded_at": now,
    }


def _load_batch(warehouse: WarehouseHook, conn: Connection, *, run_id: str, batch_size: int, counts: Counter[str]) -> int:
    s, pc, co = staged_rows, postcode_cache, company_cache
    rows = conn.execute(
        select(
            s.c.source_file, s.c.line_number, s.c.raw_row, s.c.clean_row,
            pc.c.found.label("pc_found"), pc.c.result.label("pc_result"), pc.c.run_id.label("pc_run"),
            co.c.found.label("co_found"), co.c.result.label("co_result"), co.c.run_id.label("co_run"),
        )
        .select_from(s.outerjoin(pc, pc.c.postcode == s.c.postcode).outerjoin(co, co.c.company_number == s.c.company_number))
        .where(s.c.run_id == run_id, s.c.status == "valid")
        .order_by(s.c.source_file, s.c.line_number)
        .limit(batch_size)
    ).all()
    now = dt.datetime.now(dt.UTC)
    records, statuses, bad = [], [], []
    for row in rows:
        outcome, reason = _decide(row, run_id)
        clean = json.loads(row.clean_row)
        if outcome == "quarantined":
            what = f"postcode {clean['postcode']}" if reason == "unknown_postcode" else f"company {clean['company_number']}"
            source = "postcodes.io" if reason == "unknown_postcode" else "Companies House"
            bad.append(Quarantined(row.source_file, row.line_number, row.raw_row, reason, f"{source} has no live {what}"))
            counts[reason] += 1
            continue
        records.append(
            supplier_record(
                clean,
                postcode=json.loads(row.pc_result) if row.pc_result else None,
                company=json.loads(row.co_result) if row.co_result else None,
                status=reason, row=row, run_id=run_id, now=now,
            )
        )
        statuses.append({"f": row.source_file, "l": row.line_number, "s": outcome})
        counts[reason] += 1
    warehouse.upsert(conn, suppliers, records, ["supplier_id"])
    set_status(conn, run_id=run_id, updates=statuses)
    quarantine_rows(conn, run_id=run_id, stage="load", rows=bad)
    return len(rows)


def load(warehouse: WarehouseHook, *, run_id: str, batch_size: int) -> dict[str, Any]:
    """
    Load the run's valid rows in batches of ``batch_size``, one transaction per batch.

    A rerun picks up only rows still ``valid``: committed batches are never loaded twice.

    :param warehouse: the warehouse hook
    :param run_id: the Airflow run id
    :param batch_size: rows per transaction
    """
    counts: Counter[str] = Counter()
    batches = 0
    while True:
        with warehouse.begin() as conn:
            done = _load_batch(warehouse, conn, run_id=run_id, batch_size=batch_size, counts=counts)
        if not done:
            break
        batches += 1
        log.info("Committed load batch %s (%s rows)", batches, done)
    return {"batches": batches, "by_outcome": dict(counts)}
