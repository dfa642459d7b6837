"""
Load: upsert the run's enriched rows into ``suppliers``; rows whose postcode or company does not exist
go to quarantine; rows whose enrichment is pending load as ``pending``. Each batch (rows, quarantine
records and staged statuses) commits as one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, select

from resilient_etl.enrichment import company_columns, postcode_columns
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.staging import Quarantined, quarantine_rows, set_status
from resilient_etl.schema import run_enrichment, staged_rows, suppliers

log = logging.getLogger(__name__)


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


def supplier_record(clean: dict[str, Any], *, postcode: Any, company: Any, status: str, as_of: dt.datetime | None,
                    row: Any, run_id: str, now: dt.datetime) -> dict[str, Any]:
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
        "enrichment_as_of": as_of,
        "source_file": row.source_file,
        "source_line": row.line_number,
        "run_id": run_id,
        "loaded_at": now,
    }


def _load_batch(warehouse: WarehouseHook, conn: Connection, *, run_id: str, batch_size: int, counts: Counter[str]) -> int:
    s = staged_rows
    pc, co = run_enrichment.alias("pc"), run_enrichment.alias("co")
    rows = conn.execute(
        select(
            s.c.source_file, s.c.line_number, s.c.raw_row, s.c.clean_row,
            pc.c.found.label("pc_found"), pc.c.result.label("pc_result"), pc.c.source.label("pc_source"), pc.c.as_of.label("pc_as_of"),
            co.c.found.label("co_found"), co.c.result.label("co_result"), co.c.source.label("co_source"), co.c.as_of.label("co_as_of"),
        )
        .select_from(
            s.outerjoin(pc, and_(pc.c.run_id == run_id, pc.c.kind == "postcode", pc.c.lookup_key == s.c.postcode)).outerjoin(
                co, and_(co.c.run_id == run_id, co.c.kind == "company", co.c.lookup_key == s.c.company_number)
            )
        )
        .where(s.c.run_id == run_id, s.c.status == "valid")
        .order_by(s.c.source_file, s.c.line_number)
        .limit(batch_size)
    ).all()
    now = dt.datetime.now(dt.UTC)
    records, statuses, bad = [], [], []
    for row in rows:
        outcome, reason = decide(row)
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
                status=reason,
                as_of=min((t for t in (row.pc_as_of, row.co_as_of) if t is not None), default=None),
                row=row, run_id=run_id, now=now,
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
