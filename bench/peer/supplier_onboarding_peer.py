"""
### supplier_onboarding_peer

The peer of `company_enrichment` for bench/peer_compare.py: the same drop, APIs and warehouse, written with
stock parts only (`@task`, `requests` + tenacity, `csv`, SQLAlchemy, Airflow task retries). Not deployed:
it lives under bench/ and is loaded only by the comparison.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from airflow.sdk import dag, task

sys.path.insert(0, str(Path(__file__).parent))
import peer_pipeline as peer

WORK = Path(os.environ.get("PEER_WORK_DIR", "/tmp/peer"))


@dag(
    schedule=None,
    catchup=False,
    doc_md=__doc__,
    tags=["benchmark", "peer", "suppliers"],
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=30)},
)
def supplier_onboarding_peer() -> None:
    @task
    def extract_validate() -> int:
        return peer.extract_validate(WORK / "landing", WORK / "rows.json", WORK / "rejects.csv")

    @task
    def enrich_postcodes() -> int:
        return peer.enrich_postcodes(WORK / "rows.json", WORK / "postcodes.json", os.environ["PEER_POSTCODES_URL"])

    @task
    def enrich_companies() -> int:
        return peer.enrich_companies(WORK / "rows.json", WORK / "companies.json", os.environ["PEER_COMPANIES_URL"], os.environ["PEER_API_KEY"])

    @task
    def load() -> int:
        return peer.load(WORK / "rows.json", WORK / "postcodes.json", WORK / "companies.json", os.environ["PEER_WAREHOUSE_URL"])

    first = extract_validate()
    first >> [enrich_postcodes(), enrich_companies()] >> load()


supplier_onboarding_peer()
