"""The bundled postcode reference extract: the fallback when postcodes.io and the cache have nothing."""

from __future__ import annotations

import csv
import gzip
from functools import lru_cache
from pathlib import Path
from typing import Any

from resilient_etl.hooks.identifiers import normalise_postcode

REFERENCE_COLUMNS = ("postcode", "country", "region", "admin_district", "latitude", "longitude")


def default_reference_path() -> Path:
    """Return the extract shipped with the package."""
    return Path(__file__).parent / "data" / "postcodes.csv.gz"


@lru_cache(maxsize=4)
def load_postcode_reference(path: str) -> dict[str, dict[str, Any]]:
    """
    Read a reference extract into ``{normalised postcode: result-shaped dict}``.

    :param path: a gzipped CSV with the columns of :data:`REFERENCE_COLUMNS`
    """
    out: dict[str, dict[str, Any]] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            key = normalise_postcode(row["postcode"])
            if key:
                out[key] = {c: (row[c] or None) for c in REFERENCE_COLUMNS}
    return out
