"""
One check per dependency: the warehouse, the folders, both APIs, the breakers, SMTP, Slack and
Airflow's own API server. A check returns its measurements; :mod:`.runner` bounds and runs them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import smtplib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resilient_etl.exceptions import ApiError, BreakerOpenError
from resilient_etl.health.model import FAIL, PASS, WARN, Observation, above, below, worst
from resilient_etl.resilience.stores.base import CLOSED, OPEN

if TYPE_CHECKING:
    from resilient_etl.config.models import ResilienceConfig


# A check returns (check name -> observations): one component may yield several measurements.
Check = Callable[[], dict[str, list[Observation]]]


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def warehouse_check(cfg: ResilienceConfig) -> Check:
    def run() -> dict[str, list[Observation]]:
        from sqlalchemy import text

        from resilient_etl.hooks.warehouse import WarehouseHook

        hook = WarehouseHook(cfg.warehouse.conn_id)
        started = time.perf_counter()
        with hook.engine.connect() as conn:  # no retries: health reports now, it does not wait
            conn.execute(text("SELECT 1"))
        latency = _ms(started)
        status = above(latency, cfg.health.latency_ms)
        return {"warehouse:responseTime": [Observation(cfg.warehouse.conn_id, "datastore", status, latency, "ms", f"{hook.dialect}: SELECT 1")]}

    return run


def _write_problem(path: Path) -> str | None:
    """Return why a file cannot be created in ``path`` (tried for real: root ignores permission bits), or None."""
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".health-"):
            return None
    except OSError as exc:
        return exc.strerror


def _writable(path: Path) -> bool:
    return _write_problem(path) is None


def folders_check(cfg: ResilienceConfig) -> Check:
    def run() -> dict[str, list[Observation]]:
        access: list[Observation] = []
        space: list[Observation] = []
        for name in ("landing", "archive", "rejected"):
            path = Path(getattr(cfg.paths, name))
            if not path.is_dir():
                # The pipeline creates its folders on first use: missing is fine while that can succeed.
                parent = next((p for p in path.parents if p.exists()), None)
                if parent is not None and parent.is_dir() and _writable(parent):
                    access.append(Observation(name, "system", PASS, output=f"{path}: created on first use ({parent} is writable)"))
                else:
                    access.append(Observation(name, "system", FAIL, output=f"{path} does not exist and cannot be created"))
                continue
            problems = [] if os.access(path, os.R_OK) else ["not readable"]
            if (why := _write_problem(path)) is not None:
                problems.append(f"not writable ({why})")
            access.append(Observation(name, "system", FAIL if problems else PASS, output=f"{path}: {', '.join(problems) or 'readable, writable'}"))
            free_mb = round(shutil.disk_usage(path).free / 2**20, 1)
            space.append(Observation(name, "system", below(free_mb, cfg.health.free_space_mb), free_mb, "MiB", str(path)))
        return {"folders:access": access, **({"folders:freeSpace": space} if space else {})}

    return run


def _api_call(hook: Any, endpoint: str) -> tuple[int, float]:
    """One request through the pipeline's own hook: no retries, no pacing; an error status raises typed."""
    started = time.perf_counter()
    try:
        status, _ = hook.request_once("GET", endpoint, allow_status=(404,))  # 404: the API answered
    finally:
        hook.close()
    return status, _ms(started)


_PROBES = {"postcodes_io": "/postcodes/SW1A1AA", "companies_house": "/company/00000006"}


def _probe_due(cfg: ResilienceConfig, states: list[dict[str, Any]]) -> bool:
    """
    Send the probe of each open breaker whose reset timeout has passed (or half-open one); return whether one was sent.

    Only a call closes a breaker, and with no rows to enrich nothing else calls the API: without this, a
    breaker stayed open (and the backlog pending) long after its API was back. The probe goes through the
    hook's own breaker, so it counts like any call: a failure reopens it, another worker's probe in flight
    refuses it. Done here, on the breakers check's thread, so the shared store is used by one check only.
    """
    from resilient_etl.hooks.companies_house import CompaniesHouseHook
    from resilient_etl.hooks.postcodes import PostcodesIoHook

    hooks = {"postcodes_io": PostcodesIoHook, "companies_house": CompaniesHouseHook}
    sent = False
    for s in states:
        if s["state"] == CLOSED or (s["state"] == OPEN and s.get("seconds_to_probe", 0) > 0):
            continue  # closed, or still timing out; half-open takes probes until success_threshold of them passed
        hook = hooks[s["name"]](getattr(cfg.apis, s["name"]).conn_id, timeout=cfg.health.timeout_seconds)
        breaker = hook.breaker
        try:
            if breaker is not None and not breaker.waiting():
                sent = True
                breaker.call(hook.request_once, "GET", _PROBES[s["name"]], allow_status=(404,))
        except (ApiError, BreakerOpenError):  # still failing (it reopened), or another worker is probing
            pass
        finally:
            hook.close()
    return sent


def postcodes_check(cfg: ResilienceConfig) -> Check:
    def run() -> dict[str, list[Observation]]:
        from resilient_etl.hooks.postcodes import PostcodesIoHook

        conn_id = cfg.apis.postcodes_io.conn_id
        status, latency = _api_call(PostcodesIoHook(conn_id, timeout=cfg.health.timeout_seconds), "/postcodes/SW1A1AA")
        return {
            "postcodes_io:responseTime": [Observation(conn_id, "component", above(latency, cfg.health.latency_ms), latency, "ms", f"HTTP {status}")]
        }

    return run


def companies_house_check(cfg: ResilienceConfig) -> Check:
    def run() -> dict[str, list[Observation]]:
        from resilient_etl.hooks.companies_house import CompaniesHouseHook

        conn_id = cfg.apis.companies_house.conn_id
        hook = CompaniesHouseHook(conn_id, timeout=cfg.health.timeout_seconds)
        status, latency = _api_call(hook, "/company/00000006")
        out = {
            "companies_house:responseTime": [
                Observation(conn_id, "component", above(latency, cfg.health.latency_ms), latency, "ms", f"HTTP {status}")
            ]
        }
        quota = hook.last_rate_limit
        if quota is not None and quota.remain is not None and quota.limit:
            headroom = round(quota.remain / quota.limit, 3)
            out["companies_house:rateLimitHeadroom"] = [
                Observation(
                    conn_id, "component", below(headroom, cfg.health.rate_limit_headroom), headroom, "ratio", f"{quota.remain} of {quota.limit} left"
                )
            ]
        return out

    return run


def breakers_check(cfg: ResilienceConfig) -> Check:
    def run() -> dict[str, list[Observation]]:
        from resilient_etl.hooks.shared_state import configured_store, uses_redis
        from resilient_etl.hooks.warehouse import WarehouseHook
        from resilient_etl.resilience.breaker import breaker_states
        from resilient_etl.resilience.stores.base import describe

        warehouse = WarehouseHook(cfg.warehouse.conn_id)
        if not uses_redis(cfg.shared_state.store, cfg.shared_state.redis_conn_id):
            warehouse.ensure_schema()  # a warehouse no run has used yet has no breaker tables: closed
        store = configured_store(cfg, warehouse)
        started = time.perf_counter()
        policies = [cfg.breakers.policy("postcodes_io"), cfg.breakers.policy("companies_house")]
        states = breaker_states(store, policies)
        latency = _ms(started)
        if _probe_due(cfg, states):
            states = breaker_states(store, policies)
        kind = describe(store)  # which store answers, and whether it fell back from Redis
        # An open breaker is the pipeline coping (fallbacks), not failing: warn, so someone looks.
        return {
            "breakers:state": [
                Observation(
                    s["name"],
                    "component",
                    PASS if s["state"] == "closed" else WARN,
                    s["state"],
                    None,
                    "" if s["state"] == "closed" else f"probe in {s.get('seconds_to_probe', 0)} s",
                )
                for s in states
            ],
            "shared_state:responseTime": [
                Observation(cfg.shared_state.store, "datastore", above(latency, cfg.health.latency_ms), latency, "ms", kind)
            ],
        }

    return run


def smtp_check(cfg: ResilienceConfig) -> Check:
    def run() -> dict[str, list[Observation]]:
        from airflow.sdk.bases.hook import BaseHook

        from resilient_etl.hooks.connections import connection_exists

        conn_id = cfg.alerts.email_conn_id
        if not connection_exists(conn_id):
            return {"smtp:responseTime": [_not_configured(conn_id, "e-mail alerts are not sent")]}
        conn = BaseHook.get_connection(conn_id)
        started = time.perf_counter()
        with smtplib.SMTP(conn.host, conn.port or 25, timeout=cfg.health.timeout_seconds) as client:
            code, _ = client.noop()
        latency = _ms(started)
        status = above(latency, cfg.health.latency_ms) if code == 250 else FAIL
        return {"smtp:responseTime": [Observation(conn_id, "component", status, latency, "ms", f"NOOP {code}")]}

    return run


def _not_configured(conn_id: str, consequence: str) -> Observation:
    return Observation(conn_id, "component", WARN, output=f"not configured (no connection {conn_id}): {consequence}", configured=False)


def slack_check(cfg: ResilienceConfig) -> Check:
    def run() -> dict[str, list[Observation]]:
        from resilient_etl.hooks.connections import connection_exists

        conn_id = cfg.alerts.slack_conn_id
        if not connection_exists(conn_id):
            return {"slack:connection": [_not_configured(conn_id, "Slack alerts are not sent")]}
        # A webhook has no call that posts nothing: its connection is checked, the endpoint is not called.
        return {"slack:connection": [Observation(conn_id, "component", PASS, output="configured (the webhook is not called by the check)")]}

    return run


def airflow_check(cfg: ResilienceConfig) -> Check:
    def run() -> dict[str, list[Observation]]:
        import requests

        started = time.perf_counter()
        response = requests.get(f"{cfg.health.airflow_api_url.rstrip('/')}/api/v2/monitor/health", timeout=cfg.health.timeout_seconds)
        latency = _ms(started)
        if response.status_code != 200:
            return {"airflow:responseTime": [Observation("api-server", "system", FAIL, latency, "ms", f"HTTP {response.status_code}")]}
        body = response.json()
        unhealthy = sorted(k for k, v in body.items() if isinstance(v, dict) and v.get("status") not in (None, "healthy"))
        status = worst([above(latency, cfg.health.latency_ms), WARN if unhealthy else PASS])
        return {
            "airflow:responseTime": [
                Observation(
                    "api-server", "system", status, latency, "ms", f"unhealthy: {', '.join(unhealthy)}" if unhealthy else "all components healthy"
                )
            ]
        }

    return run


# What the checks import, loaded on the calling thread before they start: importing Airflow's
# modules from several threads at once deadlocks on the module locks or half-configures logging.
_CHECK_MODULES = (
    "airflow.sdk.bases.hook",
    "requests",
    "resilient_etl.hooks.warehouse",
    "resilient_etl.hooks.postcodes",
    "resilient_etl.hooks.companies_house",
    "resilient_etl.resilience.breaker",
    "resilient_etl.hooks.shared_state",
    "airflow.sdk.exceptions",
)


def dr_drills_check(cfg: ResilienceConfig, *, now: float | None = None) -> Check:
    """
    Warn when a DR drill of ``disaster_recovery.drills.scenarios`` has not passed within ``max_age_days``.

    A deployment younger than that (its first pipeline run, or none yet) is not overdue: a fresh setup
    is healthy. The results are the ones DAG ``dr_drill`` keeps in this warehouse's ``drill_results``.
    """

    def run() -> dict[str, list[Observation]]:
        import datetime as dt

        from sqlalchemy import func, inspect, select

        from resilient_etl.hooks.warehouse import WarehouseHook
        from resilient_etl.hooks.warehouse.schema import drill_results, pipeline_runs

        drills = cfg.disaster_recovery.drills
        at = dt.datetime.fromtimestamp(now if now is not None else time.time(), dt.UTC)
        max_age = dt.timedelta(days=drills.max_age_days)
        from sqlalchemy.exc import SQLAlchemyError

        warehouse = WarehouseHook(cfg.warehouse.conn_id)
        try:
            conn = warehouse.engine.connect()
        except SQLAlchemyError as exc:  # the warehouse check fails for it; this one only cannot tell
            output = f"cannot read drill_results: {type(exc).__name__} (see the warehouse check)"
            return {"dr_drills:age": [Observation(s, "component", WARN, None, "d", output) for s in drills.scenarios]}
        with conn:
            tables = set(inspect(conn).get_table_names())
            first_run = conn.execute(select(func.min(pipeline_runs.c.finished_at))).scalar() if "pipeline_runs" in tables else None
            passed = (
                dict(
                    conn.execute(
                        select(drill_results.c.scenario, func.max(drill_results.c.started_at))
                        .where(drill_results.c.passed.is_(True), drill_results.c.scenario.in_(drills.scenarios))
                        .group_by(drill_results.c.scenario)
                    ).all()
                )
                if "drill_results" in tables
                else {}
            )
        observations = []
        for scenario in drills.scenarios:
            last = passed.get(scenario)
            last = last.replace(tzinfo=dt.UTC) if last is not None and last.tzinfo is None else last
            if last is not None:
                days = round((at - last).total_seconds() / 86_400, 1)
                status = PASS if at - last <= max_age else WARN
                output = f"last passed {last:%Y-%m-%d %H:%M} UTC ({days} days ago; max {drills.max_age_days:g})"
            else:
                first = first_run.replace(tzinfo=dt.UTC) if first_run is not None and first_run.tzinfo is None else first_run
                young = first is None or at - first <= max_age
                days = None
                status = PASS if young else WARN
                output = "never run; first one due within " + (
                    f"{drills.max_age_days:g} days of the first pipeline run" if young else "the max age, which has passed"
                )
            observations.append(Observation(scenario, "component", status, days, "d", output))
        return {"dr_drills:age": observations}

    return run


def default_checks(cfg: ResilienceConfig) -> dict[str, Check]:
    """Return every component's check, by component name (their modules imported here, on this thread)."""
    for module in _CHECK_MODULES:
        importlib.import_module(module)
    return {
        "warehouse": warehouse_check(cfg),
        "folders": folders_check(cfg),
        "postcodes_io": postcodes_check(cfg),
        "companies_house": companies_house_check(cfg),
        "breakers": breakers_check(cfg),
        "smtp": smtp_check(cfg),
        "slack": slack_check(cfg),
        "airflow": airflow_check(cfg),
        "dr_drills": dr_drills_check(cfg),
    }
