"""
Answers cached with a TTL: a rerun of an unchanged drop makes no API calls, an answer older than the TTL
is refreshed, and TTL 0 looks every key up live (the sandbox counts the requests it serves).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select, update

from resilient_etl.config import RetryPolicy
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import company_cache, run_enrichment
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl_devtools.sandbox.data import write_sample_csv

ONCE = RetryPolicy(dependency="test", max_attempts=1)


def _stage(wh: WarehouseHook, folder: Path, run_id: str) -> None:
    write_sample_csv(folder / "landing" / "s.csv", rows=60, dirty_share=0)
    extract(wh, landing_dir=folder / "landing", rejected_dir=folder / "rejected", run_id=run_id)
    validate_staged(wh, run_id=run_id)


def _enrich(wh: WarehouseHook, sandbox, run_id: str, ttl: float) -> tuple[dict, dict, int, int]:
    sandbox.postcodes.registry.requests.clear()
    sandbox.companies.registry.requests.clear()
    companies = enrich_companies(wh, CompaniesHouseHook(retry_policy=ONCE), run_id=run_id, max_non_live_share=0.25, cache_ttl_hours=ttl)
    postcodes = enrich_postcodes(wh, PostcodesIoHook(retry_policy=ONCE), run_id=run_id, max_non_live_share=0.25, cache_ttl_hours=ttl)
    return companies, postcodes, sum(sandbox.companies.registry.requests.values()), sum(sandbox.postcodes.registry.requests.values())


def _sources(wh: WarehouseHook, run_id: str, kind: str) -> dict[str, str]:
    with wh.begin() as conn:
        e = run_enrichment.c
        return dict(conn.execute(select(e.lookup_key, e.source).where(e.run_id == run_id, e.kind == kind)).all())  # type: ignore[arg-type]


def test_a_rerun_within_the_ttl_calls_nothing_and_stale_answers_are_refreshed(api_connections, sqlite_warehouse, tmp_path: Path) -> None:
    wh = WarehouseHook()
    wh.ensure_schema()
    _stage(wh, tmp_path, "first")
    companies, postcodes, ch_calls, pc_calls = _enrich(wh, api_connections, "first", ttl=24)
    distinct = len(_sources(wh, "first", "company"))
    assert ch_calls == distinct and companies["by_source"]["live"] == distinct
    assert pc_calls >= 1 and postcodes["by_source"]["live"] == len(_sources(wh, "first", "postcode"))

    # the same drop again: every answer from the cache, no request, and the run is not failed for it
    _stage(wh, tmp_path, "again")
    companies, postcodes, ch_calls, pc_calls = _enrich(wh, api_connections, "again", ttl=24)
    assert (ch_calls, pc_calls) == (0, 0)
    assert set(_sources(wh, "again", "company").values()) == {"cached"} and companies["cached_within_ttl"] == distinct
    assert companies["non_live_share"] == 0.0 and postcodes["non_live_share"] == 0.0

    # three answers aged past the TTL: exactly those are looked up again
    stale = sorted(_sources(wh, "first", "company"))[:3]
    with wh.begin() as conn:
        conn.execute(
            update(company_cache).where(company_cache.c.company_number.in_(stale)).values(fetched_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=25))
        )
    _stage(wh, tmp_path, "stale")
    _, _, ch_calls, pc_calls = _enrich(wh, api_connections, "stale", ttl=24)
    assert (ch_calls, pc_calls) == (3, 0)
    sources = _sources(wh, "stale", "company")
    assert sorted(k for k, s in sources.items() if s == "live") == stale

    # TTL 0 (the shipped default): every key live, every run
    _stage(wh, tmp_path, "no-cache")
    _, _, ch_calls, _ = _enrich(wh, api_connections, "no-cache", ttl=0)
    assert ch_calls == distinct and set(_sources(wh, "no-cache", "company").values()) == {"live"}
