"""
Companies House enrichment against its real quota shape, time-scaled: 600 requests per window, the
window 300 s divided by SCALE (default 10: 600 per 30 s). ``enrich_companies`` of N companies (default
1,800: three windows) with quota pacing in a shared store, burst (the shipped ``burst_reserve``) and
spread side by side, each against a fresh quota, measured against two floors computed from the quota:
the physical limit ((ceil(N / limit) - 1) x window, every window's quota sent at its start, plus the last
window's requests at the API's own pace, measured unthrottled in the same run: the fastest any client can
finish) and the quota rate (N x window / limit). Also the
429s the sandbox sent, and the ETA the run logged after its first answer against the time the run took.

Targets: >= 0.95 of the physical limit, 0 x 429, the ETA within 10 %.
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
from resilient_etl.config import RetryPolicy, get_config
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import staged_rows
from resilient_etl.pipeline.enrich import enrich_companies
from resilient_etl.resilience.stores.sql import SqlStore
from resilient_etl_devtools.sandbox.data import company_register
from resilient_etl_devtools.sandbox.server import Sandbox

LIMIT, WINDOW = 600, 300.0  # Companies House: 600 requests per 5 minutes
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def measure(numbers: list[str], window: float, burst_reserve: int | None, limit: int = LIMIT) -> tuple[float, int, float | None, dict]:
    """Enrich ``numbers`` against a fresh quota; return (seconds, 429s, the ETA logged at the start, the summary)."""
    with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=limit, ch_window_seconds=window) as sb:
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
        hook = CompaniesHouseHook(retry_policy=policy, pacing_store=SqlStore(wh.engine), burst_reserve=burst_reserve)
        started = time.time()
        summary = enrich_companies(wh, hook, run_id="q")
        return time.time() - started, sb.limiter.rejected, summary.get("eta_s"), summary


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1800
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    window = WINDOW / scale
    numbers = list(company_register().profiles)
    numbers += [f"{90_000_000 + i:08d}" for i in range(max(0, n - len(numbers)))]  # unknown ones answer 404: a request all the same
    numbers = numbers[:n]
    shipped = get_config().apis.companies_house.burst_reserve
    unlimited = measure(numbers, window, None, limit=10_000_000)[0]  # the API's own pace: what the last window's requests take
    runs = {"burst (shipped)": measure(numbers, window, shipped), "spread": measure(numbers, window, None)}
    windows = math.ceil(n / LIMIT)
    # every window's quota sent at its start, the last one's at the API's own pace: no client finishes sooner
    physical = (windows - 1) * window + (n - (windows - 1) * LIMIT) * unlimited / n
    rate_floor = n * window / LIMIT
    print(f"{n} companies, quota {LIMIT} per {window:g} s (the real 600 per 300 s, time x{scale:g}); burst reserve {shipped}")
    print(f"unthrottled: {unlimited:.1f} s ({unlimited / n * 1000:.1f} ms a request)")
    print(f"physical limit ((ceil(n/limit)-1) windows + the last window's requests unthrottled): {physical:.1f} s")
    print(f"quota rate floor (n x window / limit): {rate_floor:.1f} s")
    print(row("", "seconds", "physical/ours", "rate floor/ours", "429s", "ETA (s)", "ETA off by"))
    for label, (elapsed, rejected, eta, summary) in runs.items():
        off = f"{abs(eta - elapsed) / elapsed:.1%}" if eta is not None else "no ETA"
        print(row(label, f"{elapsed:.1f}", f"{physical / elapsed:.3f}", f"{rate_floor / elapsed:.3f}", rejected, f"{eta}", off))
        assert summary["by_source"]["live"] == n, summary["by_source"]  # every company answered (404s count: an answer)
    print(f"ratio physical limit : burst = {physical / runs['burst (shipped)'][0]:.3f}")


if __name__ == "__main__":
    main()
