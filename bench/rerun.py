"""
A rerun of an unchanged drop, with answers cached for a TTL (``apis.*.cache_ttl_hours``): extract, validate,
enrich and load of N rows (default 1,000: that many distinct companies) into SQLite against the sandbox,
first with an empty cache (the baseline), then the same drop again, then the drop with 1 % of its rows
moved to companies not seen before. Prints seconds, API requests per API and the ratio to the first run.

Targets: the unchanged rerun makes 0 API requests and takes <= 0.3 of the first run; the 1 % change makes
requests for those rows' companies only.

Usage: python bench/rerun.py [rows]
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

from _common import row, use_sandbox
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.load import load
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl_devtools.sandbox.data import company_register, write_sample_csv
from resilient_etl_devtools.sandbox.server import Sandbox

TTL_HOURS = 24.0


def run_once(wh: WarehouseHook, folder: Path, drop: Path, run_id: str, sb: Sandbox) -> dict[str, float]:
    """Run extract -> validate -> enrich -> load on ``drop`` as ``run_id``; return seconds and requests per API."""
    landing = folder / run_id
    landing.mkdir()
    (landing / drop.name).write_bytes(drop.read_bytes())
    sb.postcodes.registry.requests.clear()
    sb.companies.registry.requests.clear()
    started = time.perf_counter()
    extract(wh, landing_dir=landing, rejected_dir=folder / "rejected", run_id=run_id)
    validate_staged(wh, run_id=run_id)
    enrich_postcodes(wh, PostcodesIoHook(), run_id=run_id, cache_ttl_hours=TTL_HOURS)
    enrich_companies(wh, CompaniesHouseHook(), run_id=run_id, cache_ttl_hours=TTL_HOURS)
    load(wh, run_id=run_id, batch_size=5000, chunk_size=500)
    return {
        "seconds": time.perf_counter() - started,
        "postcodes": sum(sb.postcodes.registry.requests.values()),
        "companies": sum(sb.companies.registry.requests.values()),
    }


def changed_copy(drop: Path, out: Path, share: float) -> int:
    """Write ``drop`` with ``share`` of its rows moved to companies the first drop did not name; return how many."""
    with drop.open(newline="", encoding="utf-8") as fh:
        header, *records = list(csv.reader(fh))
    used = {r[header.index("company_number")].zfill(8) for r in records}
    fresh = [n for n in company_register().profiles if n not in used]
    step = round(1 / share)
    moved = 0
    for i in range(0, len(records), step):
        records[i][header.index("company_number")] = fresh[moved]
        moved += 1
    with out.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *records])
    return moved


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=10_000_000) as sb:
        folder = Path(tmp)
        use_sandbox(sb, folder / "w.db")
        wh = WarehouseHook()
        wh.ensure_schema()
        drop = write_sample_csv(folder / "drop" / "suppliers.csv", rows=rows, dirty_share=0).path
        first = run_once(wh, folder, drop, "first", sb)
        again = run_once(wh, folder, drop, "again", sb)
        moved = changed_copy(drop, folder / "drop" / "changed.csv", 0.01)
        changed = run_once(wh, folder, folder / "drop" / "changed.csv", "changed", sb)
    print(f"{rows} rows, cache TTL {TTL_HOURS:g} h, SQLite warehouse, sandbox APIs (quota raised: the APIs are not the limit)")
    print(row("", "seconds", "ratio", "postcode reqs", "company reqs"))
    print(row("first run (empty cache, baseline)", f"{first['seconds']:.2f}", "1.00", first["postcodes"], first["companies"]))
    print(row("same drop again", f"{again['seconds']:.2f}", f"{again['seconds'] / first['seconds']:.2f}", again["postcodes"], again["companies"]))
    print(
        row(
            f"{moved} rows (1 %) to new companies",
            f"{changed['seconds']:.2f}",
            f"{changed['seconds'] / first['seconds']:.2f}",
            changed["postcodes"],
            changed["companies"],
        )
    )
    met = again["postcodes"] == again["companies"] == 0 and again["seconds"] <= 0.3 * first["seconds"] and changed["companies"] == moved
    print(f"targets (0 requests and <= 0.3 of the first run; requests only for the {moved} changed companies): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
