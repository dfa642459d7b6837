"""
The health monitor: compare a health document with the last recorded statuses, alert on each
component that degrades (warn: SEV3; fail: its category's severity), recover those that pass again,
and record the new statuses in ``health_status``. The ``pipeline_health`` DAG runs it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select

from resilient_etl.alerting.engine import Alerter
from resilient_etl.exceptions import HealthCheckError, Severity
from resilient_etl.health.model import PASS, worst
from resilient_etl.health.runner import check_health
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import health_status

log = logging.getLogger(__name__)


def component_statuses(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Return component -> (worst status, outputs of its non-passing measurements) from a health document."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, observations in doc["checks"].items():
        found.setdefault(name.split(":")[0], []).extend(observations)
    return {
        component: (
            worst([o["status"] for o in obs]),
            "; ".join(f"{o['componentId']}: {o.get('output') or o.get('observedValue')}" for o in obs if o["status"] != PASS),
        )
        for component, obs in found.items()
    }


def not_configured(doc: dict[str, Any]) -> set[str]:
    """Return the components whose every measurement says it is not configured (an optional channel nobody set up)."""
    found: dict[str, list[bool]] = {}
    for name, observations in doc["checks"].items():
        found.setdefault(name.split(":")[0], []).extend(o.get("configured", True) for o in observations)
    return {component for component, flags in found.items() if not any(flags)}


def transitions(previous: dict[str, str], current: dict[str, str]) -> dict[str, tuple[str | None, str]]:
    """Return the components whose status changed (a new component counts as changed from ``pass``)."""
    return {c: (previous.get(c), s) for c, s in current.items() if previous.get(c, "pass") != s}


def monitor(warehouse: WarehouseHook, *, dag_id: str, run_id: str, logger: Any = log) -> dict[str, Any]:
    """
    Check every dependency, alert on changes, record the statuses; return the health document.

    :param warehouse: where statuses and incidents are kept
    :param dag_id: the monitoring DAG (incidents are raised on ``health:<component>`` tasks of it)
    :param run_id: its run
    """
    doc = check_health()
    now = dt.datetime.now(dt.UTC)
    current = component_statuses(doc)
    previous: dict[str, str] = {}
    since: dict[str, dt.datetime] = {}
    try:
        warehouse.ensure_schema()
        with warehouse.begin() as conn:
            for r in conn.execute(select(health_status)):
                previous[r.component], since[r.component] = r.status, r.changed_at
    except Exception as exc:  # boundary: the warehouse may be the component that is down
        logger.error("Previous health unknown (%s): every degraded component alerts", type(exc).__name__)
    changed = transitions(previous, {c: s for c, (s, _) in current.items()})
    alerter = Alerter(warehouse=warehouse)
    unconfigured = not_configured(doc)
    for component, (before, after) in changed.items():
        task = f"health:{component}"
        if component in unconfigured:  # optional and not set up: reported, never an incident
            logger.info("Health of %s: %s (not configured; no alert)", component, after)
            continue
        if after == "pass":
            logger.info("Health of %s recovered (%s -> pass)", component, before)
            alerter.recover_task(dag_id=dag_id, task_id=task, run_id=run_id)
            continue
        exc = HealthCheckError(f"health check {component}: {after} ({current[component][1]})", component=component, status=after)
        logger.warning("Health of %s changed %s -> %s: %s", component, before or "pass", after, current[component][1])
        alerter.failure(exc, dag_id=dag_id, task_id=task, run_id=run_id, severity=Severity.SEV3 if after == "warn" else None)
    try:
        with warehouse.begin() as conn:
            rows = [
                {"component": c, "status": s, "changed_at": now if c in changed or c not in since else since[c], "checked_at": now, "output": out}
                for c, (s, out) in current.items()
            ]
            warehouse.upsert(conn, health_status, rows, ["component"])
    except Exception as exc:  # boundary: recorded next time the warehouse answers
        logger.error("Health status not recorded: %s", type(exc).__name__)
    logger.info("Health: %s %s", doc["status"], {c: s for c, (s, _) in current.items()})
    return doc
