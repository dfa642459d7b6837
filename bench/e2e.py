"""
End to end: the company_enrichment flow (extract -> validate -> enrich postcodes -> enrich companies ->
load -> reconcile) on PostgreSQL against the sandbox, at several sizes, with mostly distinct companies
and postcodes (the sandbox serves a register as large as the drop and synthetic postcodes beside its
4,237 real ones). The Companies House quota is raised so the APIs are not the limit (the output says
so); the load uses the shipped config's batch and chunk sizes. Each size runs in a fresh interpreter
(its peak RSS is the pipeline's, not the sandbox's) on a fresh database.

Per size: seconds and rows/s per stage, peak RSS (and the peak reached by the end of each stage), API requests per stage against the minimum possible
(postcodes: ceil(distinct / 100); companies: one per distinct company, none cached), and at the end the
growth exponent of time vs rows per stage (log-log least-squares slope; target <= 1.1: nothing
quadratic).

Usage: python bench/e2e.py [rows ...]   (default 1000 10000 100000)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import text

from _common import row, scratch_database
from resilient_etl.config import load_config
from resilient_etl_devtools.localenv import connection_env
from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY
from resilient_etl_devtools.sandbox.data import write_sample_csv
from resilient_etl_devtools.sandbox.server import Sandbox

STAGES = ("extract", "validate", "enrich_postcodes", "enrich_companies", "load", "reconcile")
DIRTY = 0.01  # as a real drop: a few rows quarantined, none of it free

CHILD = r"""
import json, logging, os, sys, time
from pathlib import Path
def peak_mb():  # VmHWM: this process image's own peak (ru_maxrss keeps the forking parent's across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
folder, batch, chunk = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
logging.disable(logging.INFO)  # a log line per batch is not what is measured
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.load import load
from resilient_etl.pipeline.reconcile import reconcile
from resilient_etl.pipeline.validate import validate_staged
wh = WarehouseHook(); wh.ensure_schema()
run = "e2e"
stages = {
    "extract": lambda: extract(wh, landing_dir=folder / "landing", rejected_dir=folder / "rejected", run_id=run),
    "validate": lambda: validate_staged(wh, run_id=run),
    "enrich_postcodes": lambda: enrich_postcodes(wh, PostcodesIoHook(), run_id=run),
    "enrich_companies": lambda: enrich_companies(wh, CompaniesHouseHook(), run_id=run),
    "load": lambda: load(wh, run_id=run, batch_size=batch, chunk_size=chunk),
    "reconcile": lambda: reconcile(wh, run_id=run, dag_id="company_enrichment", landing_dir=folder / "landing", archive_dir=folder / "archive"),
}
out = {"seconds": {}, "peak_after_mb": {}}
for name, stage in stages.items():
    t = time.perf_counter(); result = stage(); out["seconds"][name] = time.perf_counter() - t
    out["peak_after_mb"][name] = peak_mb()
    print(json.dumps({"stage": name, "seconds": out["seconds"][name]}), file=sys.stderr, flush=True)
    if name == "reconcile":
        out["reconcile"] = {k: result[k] for k in ("rows_in", "rows_loaded", "rows_quarantined", "rows_pending") if k in result}
out["peak_rss_mb"] = peak_mb()
print(json.dumps(out))
"""


def slope(xs: list[float], ys: list[float]) -> float:
    """Return the least-squares slope of log(y) against log(x)."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-6)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def run_size(rows: int, batch: int, chunk: int) -> dict[str, Any]:
    """Run the flow once on ``rows`` rows in a fresh interpreter and database; return its figures."""
    with scratch_database("e2e") as db:
        with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=10_000_000, companies_count=rows, synthetic_postcodes=rows) as sb:
            folder = Path(tmp)
            write_sample_csv(folder / "landing" / "drop.csv", rows=rows, dirty_share=DIRTY, companies=rows, synthetic_postcodes=rows)
            env = {
                **os.environ,
                **connection_env(
                    postcodes_url=sb.postcodes.url,
                    companies_url=sb.companies.url,
                    api_key=DEFAULT_API_KEY,
                    warehouse={"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": db},
                ),
            }
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(folder), str(batch), str(chunk)], env=env, capture_output=True, text=True, check=False
            )
            if done.returncode:
                raise SystemExit(f"the run of {rows} rows failed:\n{done.stderr[-3000:]}")
            out = json.loads(done.stdout.strip().splitlines()[-1])
            out["requests"] = {
                "enrich_postcodes": sum(sb.postcodes.registry.requests.values()),
                "enrich_companies": sum(sb.companies.registry.requests.values()),
            }
        engine = sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}")
        with engine.connect() as conn:
            keys = dict(conn.execute(text("SELECT kind, count(*) FROM run_enrichment WHERE run_id = 'e2e' GROUP BY kind")).all())
        engine.dispose()
        out["minimum"] = {"enrich_postcodes": math.ceil(keys.get("postcode", 0) / 100), "enrich_companies": keys.get("company", 0)}
        out["distinct"] = {"postcodes": keys.get("postcode", 0), "companies": keys.get("company", 0)}
        out["rows"] = rows
        return out


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10_000, 100_000]
    cfg = load_config()
    batch, chunk = cfg.load.batch_size, cfg.load.chunk_size
    print(
        f"company_enrichment end to end on PostgreSQL, {os.cpu_count()} cores; load batch {batch}, chunk {chunk} (shipped config); "
        f"{DIRTY:.0%} dirty rows; Companies House quota raised to 10,000,000 per window: the APIs are not the limit"
    )
    results = []
    for rows in sizes:
        r = run_size(rows, batch, chunk)
        results.append(r)
        total = sum(r["seconds"].values())
        print(
            f"\n{rows:,} rows ({r['distinct']['companies']:,} distinct companies, {r['distinct']['postcodes']:,} distinct postcodes); peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        print(row("stage", "seconds", "rows/s", "requests", "minimum", "peak RSS MB"))
        for stage in STAGES:
            seconds = r["seconds"][stage]
            requests = r["requests"].get(stage, 0)
            print(row(stage, f"{seconds:.2f}", f"{rows / seconds:.0f}", requests, r["minimum"].get(stage, 0), f"{r['peak_after_mb'][stage]:.0f}"))
        print(row("total", f"{total:.2f}", f"{rows / total:.0f}", sum(r["requests"].values()), sum(r["minimum"].values())))
        print(row("reconcile", json.dumps(r.get("reconcile", {}))))
    if len(results) > 1:
        xs = [r["rows"] for r in results]
        print(f"\ngrowth exponent of time vs rows (log-log slope over {', '.join(f'{x:,}' for x in xs)}; target <= 1.1)")
        for stage in (*STAGES, "total"):
            ys = [sum(r["seconds"].values()) if stage == "total" else r["seconds"][stage] for r in results]
            print(row(stage, f"{slope(xs, ys):.2f}"))
    print("\nJSON " + json.dumps(results))


if __name__ == "__main__":
    main()
