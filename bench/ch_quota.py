"""
Companies House enrichment against its real quota shape, time-scaled: 600 requests per window, the
window 300 s divided by SCALE (default 10: 600 per 30 s). ``enrich_companies`` of N companies (default
1,800: three windows) with quota pacing in a shared store, measured against two floors computed from
the quota: the quota rate itself (N x window / limit) and the burst floor ((ceil(N / limit) - 1) x window:
every window's quota sent at its start, the fastest any client can finish). Also the 429s the sandbox
sent, and the ETA the run logged after its first answer against the time the rest took.

Targets: >= 0.95 of the floor, 0 x 429, the ETA within 10 %.
Usage: python bench/ch_quota.py [companies] [scale]
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import tempfile
import time
from pathlib import Path

from _common import row, use_sandbox
from resilient_etl.config import RetryPolicy
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import staged_rows
from resilient_etl.pipeline.enrich import enrich_companies
from resilient_etl.resilience.stores.sql import SqlStore
from resilient_etl_devtools.sandbox.data import company_register
from resilient_etl_devtools.sandbox.server import Sandbox

LIMIT, WINDOW = 600, 300.0  # Companies House: 600 requests per 5 minutes
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1800
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    window = WINDOW / scale
    numbers = list(company_register().profiles)
    numbers += [f"{90_000_000 + i:08d}" for i in range(max(0, n - len(numbers)))]  # unknown ones answer 404: a request all the same
    numbers = numbers[:n]
    with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=LIMIT, ch_window_seconds=window) as sb:
        use_sandbox(sb, Path(tmp) / "w.db")
        wh = WarehouseHook()
        wh.ensure_schema()
        with wh.begin() as conn:  # the run's valid rows, one per company (what validate leaves)
            conn.execute(
                staged_rows.insert(),
                [
                    {
                        "run_id": "q",
                        "source_file": "f.csv",
                        "line_number": i + 2,
                        "raw_row": "{}",
                        "status": "valid",
                        "company_number": c,
                        "staged_at": NOW,
                    }
                    for i, c in enumerate(numbers)
                ],
            )
        policy = RetryPolicy(dependency="companies_house", max_attempts=10, max_elapsed_seconds=10 * window, max_server_wait_seconds=2 * window)
        hook = CompaniesHouseHook(retry_policy=policy, pacing_store=SqlStore(wh.engine))
        started = time.time()
        summary = enrich_companies(wh, hook, run_id="q")
        elapsed = time.time() - started
        rejected = sb.limiter.rejected
    rate_floor = n * window / LIMIT
    burst_floor = (math.ceil(n / LIMIT) - 1) * window
    eta = summary.get("eta_after_first_s")
    print(f"{n} companies, quota {LIMIT} per {window:g} s (the real 600 per 300 s, time x{scale:g}); {summary['by_source']}")
    print(row("", "seconds", "floor / ours"))
    print(row("quota rate floor (n x window / limit)", f"{rate_floor:.1f}", f"{rate_floor / elapsed:.3f}"))
    print(row("burst floor ((ceil(n/limit)-1) x window)", f"{burst_floor:.1f}", f"{burst_floor / elapsed:.3f}"))
    print(row("enrich_companies, paced", f"{elapsed:.1f}", ""))
    print(row("429s from the sandbox", rejected, ""))
    if eta is not None:
        print(row("ETA after the first answer", f"{eta:.1f}", f"off by {abs(eta - elapsed) / elapsed:.1%}"))
    else:
        print("no ETA: the first answer carried no quota headers")


if __name__ == "__main__":
    main()
