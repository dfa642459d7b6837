"""
Companies House enrichment of N companies against the sandbox with a scaled quota, paced (shared SQL
store) vs unpaced (the baseline: run into the quota, wait for the reset on each 429).

Prints the achieved request rate as a fraction of the quota (target >= 0.9) and the 429s after the
first window (target 0).  Usage: python bench/ch_pacing.py [companies] [limit] [window_seconds]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from _common import row, use_sandbox
from resilient_etl.config import RetryPolicy
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.resilience.stores.sql import SqlStore
from resilient_etl_devtools.sandbox.data import company_register
from resilient_etl_devtools.sandbox.server import Sandbox


def run(n: int, limit: int, window: float, *, paced: bool) -> dict[str, float]:
    numbers = list(company_register().profiles)[:n]
    with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=limit, ch_window_seconds=window) as sb:
        use_sandbox(sb, Path(tmp) / "w.db")
        WarehouseHook().ensure_schema()
        policy = RetryPolicy(dependency="companies_house", max_attempts=10, max_elapsed_seconds=10 * window, max_server_wait_seconds=2 * window)
        hook = CompaniesHouseHook(retry_policy=policy, pacing_store=SqlStore(WarehouseHook().engine) if paced else None)
        started = time.time()
        first_reset: float | None = None
        rejected_in_first_window: int | None = None
        for number in numbers:
            if first_reset is not None and rejected_in_first_window is None and time.time() >= first_reset:
                rejected_in_first_window = sb.limiter.rejected
            hook.get_company(number)
            if first_reset is None and hook.last_rate_limit:
                first_reset = hook.last_rate_limit.reset_at
        elapsed = time.time() - started
        after_first = sb.limiter.rejected - (rejected_in_first_window or sb.limiter.rejected)
        return {
            "elapsed": elapsed,
            "rate_fraction": (n / elapsed) / (limit / window),
            "429_total": sb.limiter.rejected,
            "429_after_first_window": after_first,
        }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    window = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    print(f"{n} company lookups, sandbox quota {limit} per {window:g}s ({limit / window:g} req/s)")
    base = run(n, limit, window, paced=False)
    paced = run(n, limit, window, paced=True)
    print(row("", "unpaced (base)", "paced"))
    print(row("elapsed (s)", f"{base['elapsed']:.1f}", f"{paced['elapsed']:.1f}"))
    print(row("rate / quota", f"{base['rate_fraction']:.3f}", f"{paced['rate_fraction']:.3f}"))
    print(row("429s in all", base["429_total"], paced["429_total"]))
    print(row("429s after the first window", base["429_after_first_window"], paced["429_after_first_window"]))
    print(f"ratio paced : unpaced elapsed = {paced['elapsed'] / base['elapsed']:.2f}")


if __name__ == "__main__":
    main()
