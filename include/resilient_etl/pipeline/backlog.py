"""
Re-enrich the backlog: suppliers loaded as ``pending`` or from the reference ``fallback`` while a
breaker was open are looked up again by a later run, once both breakers are closed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, select, update

from resilient_etl.exceptions import ApiError, BreakerOpenError
from resilient_etl.hooks.warehouse.schema import quarantine, suppliers
from resilient_etl.pipeline.columns import company_columns, postcode_columns
from resilient_etl.pipeline.enrich import is_fallback_trigger

if TYPE_CHECKING:
    from resilient_etl.hooks.companies_house import CompaniesHouseHook
    from resilient_etl.hooks.postcodes import PostcodesIoHook
    from resilient_etl.hooks.warehouse import WarehouseHook

log = logging.getLogger(__name__)
BACKLOG_STATUSES = ("pending", "fallback")


def backlog_size(warehouse: WarehouseHook) -> int:
    """Return how many suppliers wait for re-enrichment."""
    from sqlalchemy import func

    with warehouse.begin() as conn:
        return conn.execute(select(func.count()).where(suppliers.c.enrichment_status.in_(BACKLOG_STATUSES))).scalar_one()


def reenrich_backlog(
    warehouse: WarehouseHook, postcodes: PostcodesIoHook, companies: CompaniesHouseHook, *, run_id: str, limit: int
) -> dict[str, Any]:
    """
    Look up to ``limit`` backlog suppliers up again and mark them ``live``; one whose postcode or
    company turns out not to exist moves to quarantine. Nothing happens while a breaker would refuse the
    calls; an open breaker whose reset timeout has passed is probed by the first lookup (no other call may
    come: a run with no new rows would otherwise leave it open, and the backlog pending, until fresh data).

    :param warehouse: the warehouse hook
    :param postcodes: the postcodes.io hook (its breaker guards every request)
    :param companies: the Companies House hook (likewise)
    :param run_id: the run doing it (recorded on updated rows and quarantine records)
    :param limit: suppliers per run
    """
    for breaker in (postcodes.breaker, companies.breaker):
        if breaker is not None and breaker.waiting():
            log.info("Backlog waits: circuit breaker %s is %s", breaker.name, breaker.current_state)
            return {"skipped": f"breaker {breaker.name} not closed", "reenriched": 0, "quarantined": 0, "remaining": backlog_size(warehouse)}
    with warehouse.begin() as conn:
        rows = conn.execute(
            select(suppliers).where(suppliers.c.enrichment_status.in_(BACKLOG_STATUSES)).order_by(suppliers.c.loaded_at).limit(limit)
        ).all()
    if not rows:
        return {"reenriched": 0, "quarantined": 0, "remaining": 0}
    try:
        pcs = postcodes.bulk_lookup({r.postcode for r in rows})
        profiles = {n: companies.get_company(n) for n in sorted({r.company_number for r in rows})}
    except (BreakerOpenError, ApiError) as exc:
        if not is_fallback_trigger(exc):
            raise
        log.warning("Backlog re-enrichment stopped: %s; it resumes in a later run", type(exc).__name__)
        return {"skipped": type(exc).__name__, "reenriched": 0, "quarantined": 0, "remaining": backlog_size(warehouse)}
    now = dt.datetime.now(dt.UTC)
    updates, gone = [], []
    for r in rows:
        pc, co = pcs.get(r.postcode), profiles.get(r.company_number)
        if pc is None or co is None:
            gone.append((r, "unknown_postcode" if pc is None else "unknown_company"))
            continue
        updates.append(
            {
                "sid": r.supplier_id,
                **postcode_columns(pc),
                **company_columns(co),
                "enrichment_status": "live",
                "enrichment_as_of": now,
                "run_id": run_id,
                "loaded_at": now,
            }
        )
    with warehouse.begin() as conn:
        if updates:
            cols = {k: bindparam(k) for k in updates[0] if k != "sid"}
            conn.execute(update(suppliers).where(suppliers.c.supplier_id == bindparam("sid")).values(**cols), updates)
        for r, reason in gone:
            raw = {c: getattr(r, c) for c in ("supplier_id", "company_number", "company_name", "postcode")}
            conn.execute(
                insert(quarantine).values(
                    run_id=run_id,
                    stage="backlog",
                    source_file=r.source_file,
                    line_number=r.source_line,
                    raw_row=json.dumps(raw),
                    error_category=reason,
                    detail=f"re-enrichment of a pending supplier (loaded by {r.run_id}) found no live record",
                    quarantined_at=now,
                )
            )
            conn.execute(delete(suppliers).where(suppliers.c.supplier_id == r.supplier_id))
    summary = {"reenriched": len(updates), "quarantined": len(gone), "remaining": backlog_size(warehouse)}
    log.info("Backlog: %s", summary)
    return summary
