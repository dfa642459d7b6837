"""Retries recovering real failures: sandbox faults over HTTP, PostgreSQL behind a proxy that is cut."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from sqlalchemy import select

from conftest import PG_HOST, PG_PORT
from resilient_etl.config import RetryPolicy
from resilient_etl.exceptions import ApiServerError, WarehouseUnavailableError
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl_devtools.drills.proxy import FaultProxy, Toxic
from resilient_etl_devtools.localenv import connection_env
from resilient_etl_devtools.sandbox.data import company_register
from resilient_etl_devtools.sandbox.server import Sandbox
from resilient_etl_devtools.sandbox.sinks import free_port

FAST = RetryPolicy(dependency="companies_house", max_attempts=5, initial_wait_seconds=0.05, max_wait_seconds=0.2, max_elapsed_seconds=20)
NUMBER = next(iter(company_register().profiles))


def _fault(app, endpoint: str, **spec) -> None:
    requests.put(f"{app.url}/__sandbox/faults/{endpoint}", json=spec, timeout=5).raise_for_status()


def _requests(app, endpoint: str) -> int:
    return app.registry.snapshot()["requests"].get(endpoint, 0)


@pytest.mark.parametrize(
    "spec",
    [
        {"status": 503, "count": 3},
        {"status": 502, "count": 1},
        {"drop": True, "count": 2},
        {"truncate": True, "count": 2},
        {"hang_seconds": 4.0, "count": 1},
    ],
    ids=["503-burst", "502", "dropped-connection", "truncated-json", "hang-past-timeout"],
)
def test_transient_faults_are_recovered(api_connections, logs, spec: dict) -> None:
    _fault(api_connections.companies, "company", **spec)
    # 2 s, not less: an answer slower than the timeout on a loaded CI machine was one more failed attempt
    # (3 requests seen once with 0.5 s); the hang stays well past it.
    hook = CompaniesHouseHook(timeout=2.0, retry_policy=FAST)
    assert hook.get_company(NUMBER)["company_number"] == NUMBER
    failures = spec["count"]
    assert _requests(api_connections.companies, "company") == failures + 1
    text = logs()
    assert [f"companies_house: attempt {n}/5 failed with" in text for n in range(1, failures + 2)] == [True] * failures + [False]
    assert f"succeeded after {failures + 1} attempts" in text


def test_bulk_postcodes_recover_too(api_connections) -> None:
    _fault(api_connections.postcodes, "bulk", status=503, count=2)
    hook = PostcodesIoHook(retry_policy=FAST)
    assert hook.bulk_lookup(["AB10 1AB"])["AB10 1AB"]["postcode"] == "AB10 1AB"


def test_retry_after_is_honoured(api_connections) -> None:
    _fault(api_connections.companies, "company", status=429, retry_after=1, count=1)
    started = time.monotonic()
    CompaniesHouseHook(retry_policy=FAST).get_company(NUMBER)
    assert time.monotonic() - started >= 0.95  # the jittered backoff alone would be under 0.2 s


def test_rate_limit_without_retry_after_waits_for_the_reset(monkeypatch, logs) -> None:
    with Sandbox(ch_limit=3, ch_window_seconds=2) as sb:
        env = connection_env(postcodes_url=sb.postcodes.url, companies_url=sb.companies.url, api_key="sandbox-key", warehouse={})
        monkeypatch.setenv("AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT", env["AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT"])
        hook = CompaniesHouseHook(retry_policy=FAST)  # no pacing: it will run into the quota
        started = time.time()
        for _ in range(3):
            assert hook.get_company(NUMBER) is not None
        first_reset = hook.last_rate_limit.reset_at
        assert hook.last_rate_limit.remain == 0
        for _ in range(2):
            assert hook.get_company(NUMBER) is not None
        assert time.time() >= first_reset  # the 4th call waited for the window to reset
        assert "attempt 1/5 failed with ApiRateLimitError (status 429" in logs()
        assert time.time() - started < 5


def test_giving_up_is_typed_and_logged_once(api_connections, logs) -> None:
    _fault(api_connections.companies, "company", status=503)
    policy = RetryPolicy(dependency="companies_house", max_attempts=3, initial_wait_seconds=0.01, max_wait_seconds=0.02)
    with pytest.raises(ApiServerError) as info:
        CompaniesHouseHook(retry_policy=policy).get_company(NUMBER)
    assert info.value.status_code == 503
    assert "gave up after 3 attempts" in info.value.__notes__[0]
    assert logs().count("gave up after 3 attempts") == 1
    assert _requests(api_connections.companies, "company") == 3


def test_permanent_errors_fail_fast(api_connections) -> None:
    _fault(api_connections.companies, "company", status=400)
    with pytest.raises(Exception) as info:
        CompaniesHouseHook(retry_policy=FAST).get_company(NUMBER)
    assert info.value.status_code == 400 and info.value.transient is False
    assert _requests(api_connections.companies, "company") == 1


def test_no_secret_in_retry_logs(api_connections, monkeypatch, logs) -> None:
    secret = "ch-live-4b1d2c3e4f5a6b7c"
    with Sandbox(api_keys=(secret,)) as sb:
        env = connection_env(postcodes_url="", companies_url=sb.companies.url, api_key=secret, warehouse={})
        monkeypatch.setenv("AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT", env["AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT"])
        _fault(sb.companies, "company", status=503, count=2)
        assert CompaniesHouseHook(retry_policy=FAST).get_company(NUMBER) is not None
    text = logs()
    assert "attempt 1/5" in text and secret not in text


def test_database_connection_retries_until_postgres_is_back(pg_warehouse, monkeypatch, logs) -> None:
    proxy = FaultProxy("warehouse", (PG_HOST, PG_PORT)).start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({**pg_warehouse, "host": "127.0.0.1", "port": proxy.port, "password": "pw-must-not-leak"})
    )
    policy = RetryPolicy(dependency="database", max_attempts=20, initial_wait_seconds=0.1, max_wait_seconds=0.5, max_elapsed_seconds=15)
    hook = WarehouseHook(retry_policy=policy)
    hook.ensure_schema()  # through the proxy
    proxy.set_toxic(Toxic("down"))  # refuses new connections, resets the pooled one
    threading.Timer(1.5, proxy.clear).start()
    started = time.monotonic()
    with hook.begin() as conn:
        assert conn.execute(select(1)).scalar_one() == 1
    assert time.monotonic() - started >= 1.4
    text = logs()
    assert "database: attempt 1/20 failed with WarehouseUnavailableError" in text
    assert "database: succeeded after" in text
    assert "pw-must-not-leak" not in text
    proxy.stop()


def test_database_gives_up_with_a_typed_error(pg_warehouse, monkeypatch) -> None:
    refusing = free_port()  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", json.dumps({**pg_warehouse, "host": "127.0.0.1", "port": refusing}))
    policy = RetryPolicy(dependency="database", max_attempts=4, initial_wait_seconds=0.05, max_wait_seconds=0.1)
    with pytest.raises(WarehouseUnavailableError) as info:
        with WarehouseHook(retry_policy=policy).begin():
            pass
    assert "gave up after 4 attempts" in info.value.__notes__[0]
