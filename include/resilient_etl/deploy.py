"""
``resilient-etl deploy check``: is a target fit to run the pipeline, before and after a release?

One line per check, each pass or fail with what it saw: the config is valid; every connection the DAGs
use is defined and answers; the warehouse schema is at the code's migration head; Airflow has no DAG
import errors; health is not ``fail``; and, on the CeleryExecutor, workers answer a ping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resilient_etl.exceptions import ConfigError


@dataclass(frozen=True)
class DeployCheck:
    """One check's outcome."""

    check: str
    ok: bool
    detail: str


def _config() -> DeployCheck:
    from resilient_etl.config import config_path, load_config

    try:
        path = config_path()
        load_config(path)
    except ConfigError as exc:
        return DeployCheck("config", False, str(exc))
    return DeployCheck("config", True, f"{path} valid")


def _connections() -> list[DeployCheck]:
    from resilient_etl.config import get_config
    from resilient_etl.hooks.companies_house import CompaniesHouseHook
    from resilient_etl.hooks.connections import connection_exists
    from resilient_etl.hooks.postcodes import PostcodesIoHook
    from resilient_etl.hooks.shared_state import uses_redis
    from resilient_etl.hooks.warehouse import WarehouseHook

    cfg = get_config()
    probes: dict[str, Callable[[], tuple[bool, str]] | None] = {
        cfg.warehouse.conn_id: lambda: WarehouseHook(cfg.warehouse.conn_id).test_connection(),
        cfg.apis.postcodes_io.conn_id: lambda: PostcodesIoHook(cfg.apis.postcodes_io.conn_id, breaker=False).test_connection(),
        cfg.apis.companies_house.conn_id: lambda: CompaniesHouseHook(cfg.apis.companies_house.conn_id, breaker=False).test_connection(),
        cfg.alerts.email_conn_id: None,  # sending a probe e-mail to on-call is not a check
        cfg.alerts.slack_conn_id: None,
    }
    if uses_redis(cfg.shared_state.store, cfg.shared_state.redis_conn_id):
        probes[cfg.shared_state.redis_conn_id] = lambda: _redis_ping(cfg.shared_state.redis_conn_id)
    results = []
    for conn_id, probe in probes.items():
        name = f"connection {conn_id}"
        if not connection_exists(conn_id):
            results.append(DeployCheck(name, False, "not defined (AIRFLOW_CONN_*, the metadata DB or the secrets backend)"))
            continue
        if probe is None:
            results.append(DeployCheck(name, True, "defined (not probed: it would alert someone)"))
            continue
        try:
            ok, message = probe()
        except Exception as exc:  # boundary: a probe that raises is a failed check, said as such
            ok, message = False, f"{type(exc).__name__}: {exc}"
        results.append(DeployCheck(name, ok, message))
    return results


def _redis_ping(conn_id: str) -> tuple[bool, str]:
    from resilient_etl.hooks.connections import redis_client

    redis_client(conn_id).ping()
    return True, "PING answered"


def _migrations() -> DeployCheck:
    from resilient_etl.config import get_config
    from resilient_etl.hooks.warehouse import WarehouseHook, migrations

    try:
        with WarehouseHook(get_config().warehouse.conn_id).connect() as conn:
            have = migrations.current(conn)
    except Exception as exc:  # boundary: an unreachable warehouse is reported by the connection check too
        return DeployCheck("warehouse migrations", False, f"{type(exc).__name__}: {exc}")
    want = migrations.head()
    if have == want:
        return DeployCheck("warehouse migrations", True, f"at head {want}")
    if have is None:
        return DeployCheck("warehouse migrations", True, f"empty warehouse: created at {want} on first use")
    return DeployCheck("warehouse migrations", False, f"at {have}, the code needs {want}: run `resilient-etl db upgrade`")


def _airflow(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("airflow")
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    return subprocess.run(
        [str(exe) if exe.exists() else (shutil.which("airflow") or "airflow"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _import_errors() -> DeployCheck:
    done = _airflow("dags", "list-import-errors", "-o", "json")
    if done.returncode != 0:
        return DeployCheck("dag import errors", False, f"airflow dags list-import-errors exited {done.returncode}: {done.stderr.strip()[-300:]}")
    # the JSON document starts on a line of its own: log lines before it may hold brackets too
    start = re.search(r"^\[\s*(\{|\])", done.stdout, re.MULTILINE)
    errors: list[Any] = json.loads(done.stdout[start.start() :]) if start else []
    if errors:
        return DeployCheck(
            "dag import errors", False, "; ".join(f"{e.get('filepath')}: {str(e.get('error')).strip().splitlines()[-1]}" for e in errors)
        )
    return DeployCheck("dag import errors", True, "none")


def _health() -> DeployCheck:
    from resilient_etl.health import check_health

    doc = check_health()
    failing = [name for name, entries in doc.get("checks", {}).items() if any(e.get("status") == "fail" for e in entries)]
    return DeployCheck("health", doc["status"] != "fail", f"{doc['status']}" + (f" ({', '.join(failing)})" if failing else ""))


def _workers() -> DeployCheck:
    from airflow.configuration import conf

    executor = conf.get("core", "executor")
    if "CeleryExecutor" not in executor:
        return DeployCheck("workers", True, f"{executor}: runs tasks itself")
    from celery import Celery

    app = Celery(broker=conf.get("celery", "broker_url"))
    try:
        replies = app.control.ping(timeout=2.0)
    finally:
        app.close()
    names = sorted(name for reply in replies for name in reply)
    return DeployCheck("workers", bool(names), f"{len(names)} answered: {', '.join(names)}" if names else "no Celery worker answered a ping")


def deploy_check() -> list[DeployCheck]:
    """Run every check (a failed one does not stop the others)."""
    results = [_config()]
    if not results[0].ok:
        return results
    return [*results, *_connections(), _migrations(), _import_errors(), _health(), _workers()]
