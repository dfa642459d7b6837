"""
Build the bundled postcode reference extract (the fallback when postcodes.io is unreachable) from the
shipped postcode records: postcode, country, region, admin_district, latitude, longitude.

In production, build it from a full ONSPD release the same way.
Usage: python scripts/build_postcode_reference.py [out.csv.gz]
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

from resilient_etl.pipeline.reference import REFERENCE_COLUMNS, default_reference_path
from resilient_etl_devtools.sandbox.data import live_postcodes


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default_reference_path()
    rows = sorted(live_postcodes().values(), key=lambda r: r["postcode"])
    with gzip.open(out, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(REFERENCE_COLUMNS)
        for r in rows:
            writer.writerow([r.get(c) if r.get(c) is not None else "" for c in REFERENCE_COLUMNS])
    print(f"wrote {len(rows)} postcodes to {out}")


if __name__ == "__main__":
    main()
