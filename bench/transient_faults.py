"""
The pipeline (extract -> validate -> enrich -> load -> reconcile, real hooks and retry policies from
config/resilience.yaml) on a sample drop, fault-free (the baseline) vs with a share of API calls
answered 503 by the sandbox.

Prints the time ratio and the rows lost (must be 0).  Usage: python bench/transient_faults.py [rows] [share]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import requests

from _common import row, use_sandbox
from resilient_etl.config import get_config
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.load import load
from resilient_etl.pipeline.reconcile import reconcile
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl_devtools.sandbox.data import write_sample_csv
from resilient_etl_devtools.sandbox.server import Sandbox


def run(rows: int, share: float) -> dict[str, float]:
    cfg = get_config()
    with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=100_000) as sb:
        tmp_path = Path(tmp)
        use_sandbox(sb, tmp_path / "w.db")
        drop = write_sample_csv(tmp_path / "landing" / "s.csv", rows=rows)
        if share:
            for app, endpoint in ((sb.postcodes, "bulk"), (sb.companies, "company")):
                requests.put(f"{app.url}/__sandbox/faults/{endpoint}", json={"status": 503, "rate": share}, timeout=5)
        wh = WarehouseHook(retry_policy=cfg.retry.policy("database"))
        wh.ensure_schema()
        started = time.monotonic()
        extract(wh, landing_dir=tmp_path / "landing", rejected_dir=tmp_path / "rejected", run_id="bench")
        validate_staged(wh, run_id="bench")
        enrich_postcodes(wh, PostcodesIoHook(retry_policy=cfg.retry.policy("postcodes_io")), run_id="bench")
        enrich_companies(wh, CompaniesHouseHook(retry_policy=cfg.retry.policy("companies_house")), run_id="bench")
        load(wh, run_id="bench", batch_size=cfg.load.batch_size)
        summary = reconcile(wh, run_id="bench", dag_id="bench", landing_dir=tmp_path / "landing", archive_dir=tmp_path / "archive")
        elapsed = time.monotonic() - started
        injected = sum(a.registry.snapshot()["injected"].get(e, 0) for a, e in ((sb.postcodes, "bulk"), (sb.companies, "company")))
        accounted = summary["rows_loaded"] + summary["rows_quarantined"] + summary["rows_pending"]
        return {"elapsed": elapsed, "lost": drop.rows - accounted, "loaded": summary["rows_loaded"], "injected": injected}


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    share = float(sys.argv[2]) if len(sys.argv) > 2 else 0.10
    base = run(rows, 0.0)
    faulty = run(rows, share)
    print(f"{rows} rows; {share:.0%} of API calls answered 503; retry policies from config/resilience.yaml")
    print(row("", "fault-free", f"{share:.0%} faults"))
    print(row("elapsed (s)", f"{base['elapsed']:.1f}", f"{faulty['elapsed']:.1f}"))
    print(row("faults injected", base["injected"], faulty["injected"]))
    print(row("rows loaded", base["loaded"], faulty["loaded"]))
    print(row("rows lost", base["lost"], faulty["lost"]))
    print(f"ratio faulty : fault-free elapsed = {faulty['elapsed'] / base['elapsed']:.2f}")


if __name__ == "__main__":
    main()
