"""Enrichment reports its progress while it works, not only at the end."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from resilient_etl.config import RetryPolicy
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.progress import ProgressLog
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl_devtools.sandbox.data import write_sample_csv

ONCE = RetryPolicy(dependency="test", max_attempts=1)


def test_companies_and_postcodes_report_while_they_run(api_connections, sqlite_warehouse, tmp_path: Path, caplog) -> None:
    wh = WarehouseHook()
    wh.ensure_schema()
    write_sample_csv(tmp_path / "landing" / "s.csv", rows=60, dirty_share=0)
    extract(wh, landing_dir=tmp_path / "landing", rejected_dir=tmp_path / "rejected", run_id="r1")
    validate_staged(wh, run_id="r1")
    companies, postcodes = [], []
    with caplog.at_level(logging.INFO, logger="resilient_etl.pipeline.progress"):
        summary = enrich_companies(
            wh,
            CompaniesHouseHook(retry_policy=ONCE),
            run_id="r1",
            on_progress=ProgressLog("companies", every_items=20, on_report=companies.append, waited=lambda: 0.0),
        )
        enrich_postcodes(
            wh,
            PostcodesIoHook(retry_policy=ONCE, bulk_size=10),
            run_id="r1",
            on_progress=ProgressLog("postcodes", every_items=20, on_report=postcodes.append, clock=time.monotonic),
        )
    total = summary["looked_up"]
    assert [r["done"] for r in companies] == [*range(20, total, 20), total]  # during the work, and at its end
    assert all(r["total"] == total and r["rate_per_second"] > 0 for r in companies)
    assert f"companies: 20/{total} (" in caplog.text and "waiting for quota" in caplog.text
    assert len(postcodes) >= 2 and postcodes[-1]["done"] == postcodes[-1]["total"]
