"""
Enrich: look the run's distinct postcodes and company numbers up and cache the answers.

Answers are written to ``postcode_cache``/``company_cache`` batch by batch, each in its own
transaction, so a retried task skips what this run already looked up instead of calling the API again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, and_, select

from resilient_etl.schema import company_cache, postcode_cache, staged_rows

if TYPE_CHECKING:
    from resilient_etl.hooks.companies_house import CompaniesHouseHook
    from resilient_etl.hooks.postcodes import PostcodesIoHook
    from resilient_etl.hooks.warehouse import WarehouseHook

log = logging.getLogger(__name__)
COMPANY_COMMIT_EVERY = 25


def _missing_keys(warehouse: WarehouseHook, *, run_id: str, cache: Table, staged_col: str, key_col: str) -> tuple[list[str], int]:
    """Return (keys of the run's valid rows this run has not cached yet, how many it already has)."""
    s = staged_rows
    key = s.c[staged_col]
    cached = cache.c[key_col]
    with warehouse.begin() as conn:
        rows = conn.execute(
            select(key, cached)
            .distinct()
            .select_from(s.outerjoin(cache, and_(cached == key, cache.c.run_id == run_id)))
            .where(s.c.run_id == run_id, s.c.status == "valid")
        ).all()
    missing = sorted(r[0] for r in rows if r[1] is None)
    return missing, len(rows) - len(missing)


def _cache_rows(warehouse: WarehouseHook, cache: Table, key_col: str, results: dict[str, Any], run_id: str) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        {key_col: k, "found": v is not None, "result": json.dumps(v) if v is not None else None, "fetched_at": now, "run_id": run_id}
        for k, v in results.items()
    ]
    with warehouse.begin() as conn:
        warehouse.upsert(conn, cache, rows, [key_col])


def enrich_postcodes(warehouse: WarehouseHook, hook: PostcodesIoHook, *, run_id: str) -> dict[str, Any]:
    """
    Bulk-look-up the postcodes of the run's valid rows (``hook.bulk_size`` per request).

    :param warehouse: the warehouse hook
    :param hook: the postcodes.io hook
    :param run_id: the Airflow run id
    """
    missing, resumed = _missing_keys(warehouse, run_id=run_id, cache=postcode_cache, staged_col="postcode", key_col="postcode")
    found = 0
    for start in range(0, len(missing), hook.bulk_size):
        batch = missing[start : start + hook.bulk_size]
        results = hook.bulk_lookup_batch(batch)
        found += sum(1 for v in results.values() if v is not None)
        _cache_rows(warehouse, postcode_cache, "postcode", results, run_id)
    log.info("Postcodes: %s looked up (%s found), %s already cached by this run", len(missing), found, resumed)
    return {"looked_up": len(missing), "found": found, "not_found": len(missing) - found, "already_cached": resumed}


def enrich_companies(warehouse: WarehouseHook, hook: CompaniesHouseHook, *, run_id: str) -> dict[str, Any]:
    """
    Fetch the company profile of each distinct company number of the run's valid rows.

    :param warehouse: the warehouse hook
    :param hook: the Companies House hook
    :param run_id: the Airflow run id
    """
    missing, resumed = _missing_keys(
        warehouse, run_id=run_id, cache=company_cache, staged_col="company_number", key_col="company_number"
    )
    found = 0
    pending: dict[str, Any] = {}
    for number in missing:
        profile = hook.get_company(number)
        found += profile is not None
        pending[number] = profile
        if len(pending) >= COMPANY_COMMIT_EVERY:
            _cache_rows(warehouse, company_cache, "company_number", pending, run_id)
            pending = {}
    if pending:
        _cache_rows(warehouse, company_cache, "company_number", pending, run_id)
    log.info("Companies: %s looked up (%s found), %s already cached by this run", len(missing), found, resumed)
    return {"looked_up": len(missing), "found": found, "not_found": len(missing) - found, "already_cached": resumed}
