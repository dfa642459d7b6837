"""
Circuit breaker measurements against the sandbox.

1. Overhead per call of the shared breaker (Redis store; SQL store on SQLite and PostgreSQL) relative
   to a bare call (target <= 10 %).
2. A full outage with several worker processes hammering the API: calls that still reach the dead API
   after the breaker opened (target: one probe per reset timeout across all workers).
3. Time from the API's recovery to the breaker closing, against the reset timeout.

Usage: python bench/breaker.py [calls]
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from _common import row, use_sandbox
from resilient_etl.config import BreakerPolicy, RetryPolicy
from resilient_etl.exceptions import BreakerOpenError
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.resilience.breaker import SharedCircuitBreaker
from resilient_etl.resilience.stores.redis import RedisStore
from resilient_etl.resilience.stores.sql import SqlStore
from resilient_etl_devtools.sandbox.data import company_register
from resilient_etl_devtools.sandbox.server import Sandbox

ONCE = RetryPolicy(dependency="companies_house", max_attempts=1)
REDIS_URL = os.environ.get("RESILIENT_ETL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PG = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": "postgres"}


def _redis_store() -> RedisStore:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    return RedisStore(client)


def _timed(fn, numbers: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for n in numbers:
            fn(n)
        best = min(best, time.perf_counter() - started)
    return best / len(numbers)


def overhead(numbers: list[str]) -> None:
    hook = CompaniesHouseHook(retry_policy=ONCE, breaker=False)  # the bench wraps calls in its own breakers
    hook.get_company(numbers[0])  # warm the pooled connection
    bare = _timed(hook.get_company, numbers)
    results = [("bare call", bare)]
    stores = {"Redis store": _redis_store(), "SQL store (SQLite)": SqlStore(WarehouseHook().engine)}
    os.environ["AIRFLOW_CONN_BENCH_PG"] = json.dumps(PG)
    try:
        pg = WarehouseHook("bench_pg")
        pg.ensure_schema()
        stores["SQL store (PostgreSQL)"] = SqlStore(pg.engine)
    except Exception as exc:  # PostgreSQL is optional for the bench
        print(f"(PostgreSQL store skipped: {type(exc).__name__})")
    for label, store in stores.items():
        breaker = SharedCircuitBreaker(BreakerPolicy(name=f"bench-{time.time_ns()}"), store)
        results.append((label, _timed(lambda n, b=breaker: b.call(hook.get_company, n), numbers)))
    bare = min(bare, _timed(hook.get_company, numbers))  # measured before and after: the best of both
    results[0] = ("bare call", bare)
    print(row("per call", "ms", "ratio to bare"))
    for label, seconds in results:
        print(row(label, f"{seconds * 1000:.3f}", f"{seconds / bare:.3f}"))


def _hammer(url: str, seconds: float, reset_timeout: float, ready: Any, go: Any, out: Any) -> None:
    import redis

    from resilient_etl_devtools.localenv import connection_env

    os.environ.update(connection_env(postcodes_url="", companies_url=url, api_key="sandbox-key", warehouse={}))
    store = RedisStore(redis.Redis.from_url(REDIS_URL))
    breaker = SharedCircuitBreaker(BreakerPolicy(name="outage", fail_max=3, reset_timeout_seconds=reset_timeout), store)
    hook = CompaniesHouseHook(retry_policy=ONCE, breaker=False)  # the bench wraps calls in its own breakers
    _ = hook.session  # resolve the connection before the start line
    ready.put(1)
    go.wait()
    stop_at = time.time() + seconds
    tries = refused = 0
    while time.time() < stop_at:
        tries += 1
        try:
            breaker.call(hook.get_company, "00000006")
        except BreakerOpenError:
            refused += 1
            time.sleep(0.01)
        except Exception:
            pass
    out.put((tries, refused))


def outage(sb: Sandbox, workers: int = 4, seconds: float = 10.0, reset_timeout: float = 1.0) -> None:
    _redis_store()
    requests.put(f"{sb.companies.url}/__sandbox/faults/company", json={"status": 503}, timeout=5)
    ctx = multiprocessing.get_context("spawn")
    out, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_hammer, args=(sb.companies.url, seconds, reset_timeout, ready, go, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    before = sb.companies.registry.snapshot()["requests"].get("company", 0)
    go.set()
    for p in procs:
        p.join()
    tries = refused = 0
    for _ in procs:
        t, r = out.get()
        tries += t
        refused += r
    reached = sb.companies.registry.snapshot()["requests"].get("company", 0) - before
    # to open: up to fail_max failures plus one in flight per other worker; then one probe per timeout
    expected = 3 + (workers - 1) + seconds / reset_timeout
    print(f"{workers} processes x {seconds:.0f}s against a dead API, reset timeout {reset_timeout:g}s:")
    print(row("calls attempted", tries))
    print(row("refused by the breaker", refused))
    print(row("reached the dead API", reached))
    print(row("probes after opening", f"{reached - 3}  (one per reset timeout: {seconds / reset_timeout:.0f})"))
    print(row("bound: open + 1 per timeout", f"<= {expected:.0f}"))


def recovery(sb: Sandbox, reset_timeout: float = 2.0) -> None:
    store = _redis_store()
    breaker = SharedCircuitBreaker(BreakerPolicy(name="recovery", fail_max=1, reset_timeout_seconds=reset_timeout), store)
    hook = CompaniesHouseHook(retry_policy=ONCE, breaker=False)  # the bench wraps calls in its own breakers
    requests.put(f"{sb.companies.url}/__sandbox/faults/company", json={"status": 503}, timeout=5)
    try:
        breaker.call(hook.get_company, "00000006")
    except Exception:
        pass
    opened = time.time()
    time.sleep(reset_timeout / 2)
    requests.delete(f"{sb.companies.url}/__sandbox/faults", timeout=5)
    recovered = time.time()
    while breaker.current_state != "closed":
        try:
            breaker.call(hook.get_company, "00000006")
        except BreakerOpenError:
            time.sleep(0.05)  # a worker's next item
    closed = time.time()
    print(f"recovery: API back {recovered - opened:.2f}s after the breaker opened (reset timeout {reset_timeout:g}s)")
    print(row("recovery -> closed (s)", f"{closed - recovered:.2f}"))
    print(row("opened -> closed / reset timeout", f"{(closed - opened) / reset_timeout:.2f}"))


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    numbers = list(company_register().profiles)[:calls]
    with tempfile.TemporaryDirectory() as tmp, Sandbox(ch_limit=10_000_000) as sb:
        use_sandbox(sb, Path(tmp) / "w.db")
        WarehouseHook().ensure_schema()
        overhead(numbers)
        print()
        outage(sb)
        print()
        recovery(sb)


if __name__ == "__main__":
    main()
