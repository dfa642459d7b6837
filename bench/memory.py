"""
Bounded memory: extract + validate of an N-row drop (default 1,000,000) into a SQLite warehouse, each in a
fresh interpreter, reporting peak RSS and time beside two baselines measured the same way: the
interpreter with the same modules imported and nothing done (the floor every task pays), and Python's
``csv`` module counting the file's records (reading the file at all).

Target: peak RSS at most 300 MB for 1,000,000 rows (the file is streamed; a page of rows and the run's
supplier ids, ~100 bytes each, are what is held).

Usage: python bench/memory.py [rows]
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import row  # first: it sets the Airflow home the hooks need
from resilient_etl_devtools.sandbox.data import write_sample_csv

BLOCK = 10_000  # the drop is this sample repeated with new supplier ids: a 1M-row sample is not built in memory

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
folder, mode = Path(sys.argv[1]), sys.argv[2]
os.environ["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] = json.dumps({"conn_type": "sqlite", "host": str(folder / f"w-{mode}.db")})
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.validate import validate_staged
out = {}
if mode == "csv":
    import csv
    t = time.perf_counter()
    with (folder / "landing" / "big.csv").open(newline="", encoding="utf-8") as fh:
        out["rows"] = sum(1 for _ in csv.reader(fh)) - 1
    out["read_s"] = time.perf_counter() - t
elif mode == "pipeline":
    wh = WarehouseHook(); wh.ensure_schema()
    t = time.perf_counter(); s = extract(wh, landing_dir=folder / "landing", rejected_dir=folder / "rejected", run_id="r"); out["extract_s"] = time.perf_counter() - t
    t = time.perf_counter(); v = validate_staged(wh, run_id="r"); out["validate_s"] = time.perf_counter() - t
    out.update(rows=s["rows_staged"], valid=v["rows_valid"], quarantined=v["rows_quarantined"])
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def write_drop(path: Path, rows: int) -> None:
    """Write an ``rows``-row drop: a 10,000-row sample (3 % dirty) repeated with distinct supplier ids, streamed."""
    sample = write_sample_csv(path.with_name("block.csv"), rows=BLOCK)
    with sample.path.open(newline="", encoding="utf-8") as fh:
        header, *block = list(csv.reader(fh))
    at = header.index("supplier_id")
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for copy in range(-(-rows // BLOCK)):
            for record in block[: rows - copy * BLOCK]:
                writer.writerow([*record[:at], f"{record[at]}-{copy:04d}" if record[at] else "", *record[at + 1 :]])
    sample.path.unlink()


def child(folder: Path, mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), mode], capture_output=True, text=True, check=False, env=os.environ)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    folder = Path(tempfile.mkdtemp(prefix="retl-bench-memory-"))
    (folder / "landing").mkdir()
    started = time.perf_counter()
    write_drop(folder / "landing" / "big.csv", rows)
    size = (folder / "landing" / "big.csv").stat().st_size
    print(f"drop: {rows:,} rows, {size / 2**20:.0f} MiB, written in {time.perf_counter() - started:.1f} s; {os.cpu_count()} cores")
    floor, reading, ours = child(folder, "imports"), child(folder, "csv"), child(folder, "pipeline")
    print(row("", "peak RSS MB", "seconds", "rows/s"))
    print(row("imports only (floor)", f"{floor['peak_rss_mb']:.0f}", "", ""))
    print(
        row("csv module, count records", f"{reading['peak_rss_mb']:.0f}", f"{reading['read_s']:.1f}", f"{reading['rows'] / reading['read_s']:,.0f}")
    )
    total = ours["extract_s"] + ours["validate_s"]
    print(row("extract + validate", f"{ours['peak_rss_mb']:.0f}", f"{total:.1f}", f"{ours['rows'] / total:,.0f}"))
    print(row("  extract / validate seconds", "", f"{ours['extract_s']:.1f} / {ours['validate_s']:.1f}", ""))
    print(f"rows staged {ours['rows']:,}, valid {ours['valid']:,}, quarantined {ours['quarantined']:,}")
    print(
        f"peak RSS above the floor: {ours['peak_rss_mb'] - floor['peak_rss_mb']:.0f} MB; "
        f"target <= 300 MB peak: {'met' if ours['peak_rss_mb'] <= 300 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
