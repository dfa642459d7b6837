"""Redis (``breaker_store``) down: the pipeline carries on on the warehouse tables, says so once, and is classified as itself."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from _support.alert_sinks import free_port
from resilient_etl.classification import classify
from resilient_etl.config import RetryPolicy, get_config
from resilient_etl.exceptions import Category
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.shared_state import shared_store
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline.enrich import enrich_companies, enrich_postcodes
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.validate import validate_staged
from resilient_etl.resilience.breaker import SharedCircuitBreaker
from resilient_etl_devtools.sandbox.data import write_sample_csv

ONCE = RetryPolicy(dependency="test", max_attempts=1)


@pytest.fixture
def dead_redis(monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``breaker_store`` connection to a loopback port where no Redis listens (a stopped server)."""
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_BREAKER_STORE", json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": port}))
    return f"127.0.0.1:{port}"


def test_enrichment_runs_on_the_warehouse_tables_and_warns_once(api_connections, sqlite_warehouse, dead_redis, tmp_path: Path, caplog) -> None:
    wh = WarehouseHook()
    wh.ensure_schema()
    write_sample_csv(tmp_path / "landing" / "s.csv", rows=30, dirty_share=0)
    extract(wh, landing_dir=tmp_path / "landing", rejected_dir=tmp_path / "rejected", run_id="r")
    validate_staged(wh, run_id="r")
    cfg = get_config()
    with caplog.at_level(logging.WARNING):
        breakers = shared_store("redis", warehouse=wh, redis_conn_id="breaker_store")
        pacing = shared_store("redis", warehouse=wh, redis_conn_id="breaker_store")
        companies = enrich_companies(
            wh,
            CompaniesHouseHook(
                retry_policy=ONCE, pacing_store=pacing, breaker=SharedCircuitBreaker(cfg.breakers.policy("companies_house"), breakers)
            ),
            run_id="r",
        )
        postcodes = enrich_postcodes(
            wh, PostcodesIoHook(retry_policy=ONCE, breaker=SharedCircuitBreaker(cfg.breakers.policy("postcodes_io"), breakers)), run_id="r"
        )
    assert companies["by_source"]["live"] == companies["looked_up"] > 0
    assert postcodes["by_source"]["live"] == postcodes["looked_up"] > 0
    warnings = [r.getMessage() for r in caplog.records if "Shared-state store" in r.getMessage()]
    assert (
        warnings
        == ["Shared-state store redis breaker_store unavailable (ConnectionError): falling back to the warehouse tables for this process"] * 2
    )  # once per store (breakers, pacing), not once per call
    assert "falls back" not in breakers.description and "SqlStore (fell back" in breakers.description


def test_a_redis_failure_is_classified_as_the_shared_state_store() -> None:
    try:
        redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError as exc:
        c = classify(exc, get_config().classification.entries())
    assert c.category is Category.SHARED_STATE_UNAVAILABLE and c.transient
    assert c.runbook == "shared-state-unavailable" and "Redis" in c.action


def test_breakers_command_says_so_in_one_line_with_its_exit_code(sqlite_warehouse, dead_redis) -> None:
    import os

    done = subprocess.run(
        [str(Path(sys.executable).with_name("resilient-etl")), "breakers"],
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"},  # it prints a banner
            "RESILIENT_ETL__SHARED_STATE__STORE": "redis",
        },
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines() == [
        "resilient-etl breakers: shared-state store redis breaker_store unavailable; these are the warehouse tables the workers "
        "fall back to (runbook: shared-state-unavailable)"
    ]
    assert [b["state"] for b in json.loads(done.stdout)] == ["closed", "closed"]
