"""
A user's own task calling a hook is breaker-guarded exactly as the pipeline is.

A plain PythonOperator (a real DAG run) calls ``PostcodesIoHook().lookup()`` during a 503 storm: the
API's shared breaker opens after ``fail_max`` failures and refuses the rest without sending. New
processes calling the hook then find it open in the shared store and, together, send at most one
probe per reset timeout.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from resilient_etl.exceptions import BreakerOpenError, ConfigError
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import breaker_events
from resilient_etl.resilience.stores.sql import SqlStore

RESET_SECONDS = 2.0
FAIL_MAX = 3
USER_DAG = """
from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def look_up_postcodes() -> list[str]:
    from resilient_etl.config import RetryPolicy
    from resilient_etl.exceptions import ApiServerError, BreakerOpenError
    from resilient_etl.hooks.postcodes import PostcodesIoHook

    hook = PostcodesIoHook(retry_policy=RetryPolicy(dependency="postcodes_io", max_attempts=1))
    outcomes = []
    for _ in range(10):
        try:
            hook.lookup("AB10 1AB")
            outcomes.append("ok")
        except ApiServerError:
            outcomes.append("failed")
        except BreakerOpenError:
            outcomes.append("refused")
    hook.close()
    if outcomes != ["failed"] * {fail_max} + ["refused"] * (10 - {fail_max}):
        raise AssertionError(outcomes)
    return outcomes


with DAG(dag_id="user_postcodes", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False) as dag:
    PythonOperator(task_id="look_up", python_callable=look_up_postcodes)
"""
WORKER = """
import sys, time
from resilient_etl.config import RetryPolicy
from resilient_etl.exceptions import ApiServerError, BreakerOpenError
from resilient_etl.hooks.postcodes import PostcodesIoHook

hook = PostcodesIoHook(retry_policy=RetryPolicy(dependency="postcodes_io", max_attempts=1))
print("ready", flush=True)
sys.stdin.readline()
until = time.time() + float(sys.argv[1])
sent = refused = 0
while time.time() < until:
    try:
        hook.lookup("AB10 1AB")
        sent += 1
    except ApiServerError:
        sent += 1
    except BreakerOpenError:
        refused += 1
    time.sleep(0.01)
print(sent, refused, flush=True)
"""


def _lookups(sandbox) -> int:
    return sandbox.postcodes.registry.snapshot()["requests"].get("lookup", 0)


@pytest.fixture
def breaker_env(airflow_db, api_connections, sqlite_warehouse, monkeypatch: pytest.MonkeyPatch):
    """The sandbox, a fresh warehouse holding the shared breaker state, and a short reset timeout."""
    monkeypatch.setenv("RESILIENT_ETL__BREAKERS__POSTCODES_IO__FAIL_MAX", str(FAIL_MAX))
    monkeypatch.setenv("RESILIENT_ETL__BREAKERS__POSTCODES_IO__RESET_TIMEOUT_SECONDS", str(RESET_SECONDS))
    monkeypatch.delenv("AIRFLOW_CONN_BREAKER_STORE", raising=False)  # the warehouse tables are the shared store
    return api_connections


def test_a_plain_python_operator_is_guarded_and_new_processes_probe_once_per_reset_timeout(breaker_env, tmp_path: Path) -> None:
    sandbox = breaker_env
    requests.put(f"{sandbox.postcodes.url}/__sandbox/faults/lookup", json={"status": 503}, timeout=5).raise_for_status()
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "user_postcodes.py").write_text(USER_DAG.replace("{fail_max}", str(FAIL_MAX)))
    # the connections and overrides of this test, for processes of their own (no unit-test banner on stdout)
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    before = _lookups(sandbox)
    task = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "tasks", "test", "user_postcodes", "look_up"],
        env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags")},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    # the task asserted its outcomes: 3 failures reached the API, 7 were refused without a request
    assert task.returncode == 0, (task.stdout + task.stderr)[-3000:]
    assert "new_state=success" in task.stdout + task.stderr, task.stdout[-3000:]
    assert _lookups(sandbox) - before == FAIL_MAX

    store = SqlStore(WarehouseHook().engine)
    snap = store.read("postcodes_io")
    assert snap.state == "open"
    with WarehouseHook().begin() as conn:
        events = [(e.from_state, e.to_state) for e in conn.execute(select(breaker_events).order_by(breaker_events.c.id))]
    assert events == [("closed", "open")]

    # New processes, the API still failing: together they probe at most once per reset timeout.
    seconds = 3 * RESET_SECONDS
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    for w in workers:
        while (line := w.stdout.readline()) and line.strip() != "ready":
            pass  # anything a library prints at import
        assert line.strip() == "ready", w.stderr.read()
    start, before = time.time(), _lookups(sandbox)
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    results = []
    for w in workers:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err[-2000:]
        results.append(tuple(int(x) for x in out.split()[-2:]))
    probes = _lookups(sandbox) - before
    window = time.time() - start
    # each failed probe reopens the breaker: two probes are at least a reset timeout apart, whoever sends them
    assert 1 <= probes <= math.floor(window / RESET_SECONDS) + 1, (probes, window, results)
    assert sum(sent for sent, _ in results) == probes
    assert all(refused > 10 for _, refused in results)  # every process kept calling and was refused without sending


def test_the_connection_extra_opts_out_or_overrides_the_policy(breaker_env, monkeypatch: pytest.MonkeyPatch) -> None:
    from resilient_etl.config import RetryPolicy
    from resilient_etl.exceptions import ApiServerError

    sandbox = breaker_env
    requests.put(f"{sandbox.postcodes.url}/__sandbox/faults/lookup", json={"status": 503}, timeout=5).raise_for_status()
    conn = json.loads(os.environ["AIRFLOW_CONN_POSTCODES_IO_DEFAULT"])
    once = RetryPolicy(dependency="postcodes_io", max_attempts=1)

    monkeypatch.setenv("AIRFLOW_CONN_POSTCODES_IO_DEFAULT", json.dumps({**conn, "extra": {"breaker": False}}))
    hook = PostcodesIoHook(retry_policy=once)
    before = _lookups(sandbox)
    for _ in range(FAIL_MAX + 2):
        with pytest.raises(ApiServerError):
            hook.lookup("AB10 1AB")
    assert hook.breaker is None and _lookups(sandbox) - before == FAIL_MAX + 2  # every call reached the API

    monkeypatch.setenv("AIRFLOW_CONN_POSTCODES_IO_DEFAULT", json.dumps({**conn, "extra": {"breaker": {"fail_max": 1}}}))
    hook = PostcodesIoHook(retry_policy=once)
    with pytest.raises(ApiServerError):
        hook.lookup("AB10 1AB")
    with pytest.raises(BreakerOpenError) as info:
        hook.lookup("AB10 1AB")
    assert hook.breaker.policy.fail_max == 1 and hook.breaker.policy.reset_timeout_seconds == RESET_SECONDS
    assert info.value.retry_at is not None and "until" in str(info.value)

    monkeypatch.setenv("AIRFLOW_CONN_POSTCODES_IO_DEFAULT", json.dumps({**conn, "extra": {"breaker": {"fail_max": 0}}}))
    with pytest.raises(ConfigError) as bad:
        PostcodesIoHook(retry_policy=once).lookup("AB10 1AB")
    assert bad.value.field == "extra.breaker.fail_max" and "postcodes_io_default" in str(bad.value)


def test_without_a_shared_store_the_breaker_still_guards_in_this_process(api_connections, monkeypatch, caplog) -> None:
    """No Redis and no warehouse connection: the hook keeps its breaker in memory and says so."""
    from resilient_etl.config import RetryPolicy
    from resilient_etl.exceptions import ApiServerError

    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_BREAKER_STORE", raising=False)
    requests.put(f"{api_connections.postcodes.url}/__sandbox/faults/lookup", json={"status": 503}, timeout=5).raise_for_status()
    hook = PostcodesIoHook(retry_policy=RetryPolicy(dependency="postcodes_io", max_attempts=1))
    outcomes = []
    for _ in range(8):
        try:
            hook.lookup("AB10 1AB")
        except (ApiServerError, BreakerOpenError) as exc:
            outcomes.append(type(exc).__name__)
    fail_max = hook.breaker.policy.fail_max
    assert outcomes == ["ApiServerError"] * fail_max + ["BreakerOpenError"] * (8 - fail_max)
    assert "its state is kept in this process only" in caplog.text
