"""Quota pacing shared by several workers against the sandbox's real quota: no 429 in steady state."""

from __future__ import annotations

import math
import threading
import time

import pytest

from resilient_etl.config import RetryPolicy
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.connections import redis_client
from resilient_etl.hooks.shared_state import shared_store
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.resilience.stores.redis import RedisStore
from resilient_etl.resilience.stores.sql import SqlStore
from resilient_etl_devtools.localenv import connection_env
from resilient_etl_devtools.sandbox.data import company_register
from resilient_etl_devtools.sandbox.server import Sandbox

LIMIT, WINDOW, WORKERS, PER_WORKER = 20, 2.0, 2, 25
NUMBERS = list(company_register().profiles)[:PER_WORKER]


def _run_workers(make_store) -> tuple[float, int]:
    errors: list[BaseException] = []

    def worker() -> None:
        hook = CompaniesHouseHook(retry_policy=RetryPolicy(dependency="companies_house", max_attempts=1), pacing_store=make_store())
        try:
            for number in NUMBERS:
                hook.get_company(number)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return time.monotonic() - started, WORKERS * PER_WORKER


@pytest.fixture
def quota_sandbox(monkeypatch):
    with Sandbox(ch_limit=LIMIT, ch_window_seconds=WINDOW) as sb:
        env = connection_env(postcodes_url=sb.postcodes.url, companies_url=sb.companies.url, api_key="sandbox-key", warehouse={})
        monkeypatch.setenv("AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT", env["AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT"])
        yield sb


def _assert_paced(sb: Sandbox, elapsed: float, sent: int) -> None:
    assert sb.limiter.rejected == 0  # no worker ever met a 429 (every call would have raised: one attempt only)
    windows = math.ceil(sent / LIMIT)
    # the quota is used, not wasted: the calls fit in the windows they need
    assert elapsed <= windows * WINDOW + 1.5  # slack for a loaded machine; waste would cost whole windows
    assert elapsed >= (windows - 1) * (WINDOW - 1)  # and never faster than the quota allows


def test_sql_store_paces_workers(quota_sandbox, sqlite_warehouse) -> None:
    WarehouseHook().ensure_schema()
    elapsed, sent = _run_workers(lambda: SqlStore(WarehouseHook().engine))
    _assert_paced(quota_sandbox, elapsed, sent)


def test_redis_store_paces_workers(quota_sandbox, breaker_store) -> None:
    elapsed, sent = _run_workers(lambda: RedisStore(redis_client("breaker_store")))
    _assert_paced(quota_sandbox, elapsed, sent)


def test_store_choice(sqlite_warehouse, breaker_store, monkeypatch) -> None:
    redis_first = shared_store("auto", warehouse=WarehouseHook(), redis_conn_id="breaker_store")
    assert isinstance(redis_first.primary, RedisStore) and redis_first.degraded is None  # the warehouse only if Redis fails
    assert isinstance(shared_store("sql", warehouse=WarehouseHook(), redis_conn_id="breaker_store"), SqlStore)
    monkeypatch.delenv("AIRFLOW_CONN_BREAKER_STORE")
    assert isinstance(shared_store("auto", warehouse=WarehouseHook(), redis_conn_id="breaker_store"), SqlStore)
