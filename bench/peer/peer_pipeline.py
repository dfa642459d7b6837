"""
The supplier onboarding a competent data engineer writes without resilient-etl: ``csv``, ``requests`` with
tenacity retries, SQLAlchemy, one upsert; Airflow's task retries do the rest (supplier_onboarding_peer.py
wires these functions as tasks). Files between tasks, as XCom should not carry data.

Deliberately ordinary, not a straw man: bulk postcode lookups, a session per task, retries with
exponential backoff on connection errors, timeouts, 429 and 5xx, an idempotent upsert keyed on the
supplier id, bad rows written to a rejects file with their reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import requests
import sqlalchemy
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

POSTCODE = re.compile(r"^[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}$")
COMPANY = re.compile(r"^[A-Z0-9]{8}$")
TIMEOUT = 10


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    return isinstance(exc, requests.HTTPError) and exc.response is not None and (exc.response.status_code == 429 or exc.response.status_code >= 500)


# the usual recipe: 5 attempts, 1 s doubling to 16 s
http_retry = retry(retry=retry_if_exception(_retryable), wait=wait_exponential(multiplier=1, max=16), stop=stop_after_attempt(5), reraise=True)


def extract_validate(landing: Path, out: Path, rejects: Path) -> int:
    """Read every CSV of ``landing``, keep the rows that pass the checks, write the others with why; return rows kept."""
    kept, seen = [], set()
    with rejects.open("w", newline="", encoding="utf-8") as bad_fh:
        bad = csv.writer(bad_fh)
        for path in sorted(landing.glob("*.csv")):
            with path.open(newline="", encoding="utf-8") as fh:
                for line, rec in enumerate(csv.DictReader(fh), start=2):
                    rec = {k: (v or "").strip() for k, v in rec.items()}
                    rec["postcode"] = rec["postcode"].upper()
                    rec["company_number"] = rec["company_number"].upper().zfill(8)
                    why = None
                    if not POSTCODE.match(rec["postcode"]):
                        why = "postcode"
                    elif not COMPANY.match(rec["company_number"]):
                        why = "company_number"
                    elif not rec["company_name"] or not rec["supplier_id"]:
                        why = "missing field"
                    elif rec["supplier_id"] in seen:
                        why = "duplicate supplier_id"
                    else:
                        try:
                            float(rec["annual_spend_gbp"])
                            dt.date.fromisoformat(rec["onboarded_on"])
                        except ValueError:
                            why = "number or date"
                    if why:
                        bad.writerow([path.name, line, why])
                        continue
                    seen.add(rec["supplier_id"])
                    kept.append(rec)
    out.write_text(json.dumps(kept), encoding="utf-8")
    return len(kept)


def enrich_postcodes(rows_in: Path, out: Path, base_url: str) -> int:
    """Look up each distinct postcode, 100 per bulk request; return how many were found."""
    rows = json.loads(rows_in.read_text(encoding="utf-8"))
    codes = sorted({r["postcode"] for r in rows})
    session = requests.Session()

    @http_retry
    def bulk(chunk: list[str]) -> list[dict[str, Any]]:
        r = session.post(f"{base_url}/postcodes", json={"postcodes": chunk}, timeout=TIMEOUT)
        r.raise_for_status()
        return r.json()["result"]

    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(codes), 100):
        for item in bulk(codes[start : start + 100]):
            if item["result"]:
                found[item["query"]] = {k: item["result"].get(k) for k in ("country", "region", "admin_district", "latitude", "longitude")}
    out.write_text(json.dumps(found), encoding="utf-8")
    return len(found)


def enrich_companies(rows_in: Path, out: Path, base_url: str, api_key: str) -> int:
    """Fetch each distinct company's profile; return how many were found."""
    rows = json.loads(rows_in.read_text(encoding="utf-8"))
    session = requests.Session()
    session.auth = (api_key, "")

    @http_retry
    def profile(number: str) -> dict[str, Any] | None:
        r = session.get(f"{base_url}/company/{number}", timeout=TIMEOUT)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    found: dict[str, dict[str, Any]] = {}
    for number in sorted({r["company_number"] for r in rows}):
        p = profile(number)
        if p is not None:
            found[number] = {"name": p.get("company_name"), "status": p.get("company_status"), "type": p.get("type")}
    out.write_text(json.dumps(found), encoding="utf-8")
    return len(found)


SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_suppliers (
    supplier_id VARCHAR(64) PRIMARY KEY, company_number VARCHAR(8) NOT NULL, company_name VARCHAR(255) NOT NULL,
    postcode VARCHAR(8) NOT NULL, annual_spend_gbp NUMERIC(14, 2), onboarded_on DATE,
    pc_region VARCHAR(100), pc_admin_district VARCHAR(100), co_name VARCHAR(255), co_status VARCHAR(50),
    loaded_at TIMESTAMP WITH TIME ZONE NOT NULL
)
"""
UPSERT = """
INSERT INTO peer_suppliers VALUES (:supplier_id, :company_number, :company_name, :postcode, :annual_spend_gbp, :onboarded_on,
    :pc_region, :pc_admin_district, :co_name, :co_status, :loaded_at)
ON CONFLICT (supplier_id) DO UPDATE SET company_number = EXCLUDED.company_number, company_name = EXCLUDED.company_name,
    postcode = EXCLUDED.postcode, annual_spend_gbp = EXCLUDED.annual_spend_gbp, onboarded_on = EXCLUDED.onboarded_on,
    pc_region = EXCLUDED.pc_region, pc_admin_district = EXCLUDED.pc_admin_district, co_name = EXCLUDED.co_name,
    co_status = EXCLUDED.co_status, loaded_at = EXCLUDED.loaded_at
"""


def load(rows_in: Path, postcodes_in: Path, companies_in: Path, url: str) -> int:
    """Upsert every kept row with its enrichment in one transaction (executemany); return rows written."""
    rows = json.loads(rows_in.read_text(encoding="utf-8"))
    pcs = json.loads(postcodes_in.read_text(encoding="utf-8"))
    cos = json.loads(companies_in.read_text(encoding="utf-8"))
    now = dt.datetime.now(dt.UTC)
    records = [
        {
            **{k: r[k] for k in ("supplier_id", "company_number", "company_name", "postcode")},
            "annual_spend_gbp": r["annual_spend_gbp"],
            "onboarded_on": r["onboarded_on"],
            "pc_region": pcs.get(r["postcode"], {}).get("region"),
            "pc_admin_district": pcs.get(r["postcode"], {}).get("admin_district"),
            "co_name": cos.get(r["company_number"], {}).get("name"),
            "co_status": cos.get(r["company_number"], {}).get("status"),
            "loaded_at": now,
        }
        for r in rows
    ]
    engine = sqlalchemy.create_engine(url, executemany_mode="values_plus_batch")
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(SCHEMA))
            if records:
                conn.execute(sqlalchemy.text(UPSERT), records)
    finally:
        engine.dispose()
    return len(records)
