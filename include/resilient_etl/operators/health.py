"""Scheduled health checks that alert when a component degrades and recover when it passes again."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from resilient_etl.operators.base import WarehouseOperator


def component_statuses(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Return component -> (worst status, outputs of its non-passing measurements) from a health document."""
    from resilient_etl.health import PASS, worst

    found: dict[str, list[dict[str, Any]]] = {}
    for name, observations in doc["checks"].items():
        found.setdefault(name.split(":")[0], []).extend(observations)
    return {
        component: (worst([o["status"] for o in obs]),
                    "; ".join(f"{o['componentId']}: {o.get('output') or o.get('observedValue')}" for o in obs if o["status"] != PASS))
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


class HealthCheckOperator(WarehouseOperator):
    """
    Check every dependency (:func:`resilient_etl.health.check_health`), record each component's
    status in ``health_status``, alert when one turns warn (SEV3) or fail (its category's severity),
    and send a recovery message when it passes again.

    Returns (XCom) the health document. The task itself succeeds whatever the health: it reports,
    the alerts carry the news (a failing task would alert a second time).
    """

    def execute(self, context: Any) -> dict[str, Any]:
        from resilient_etl.errors import HealthCheckError, Severity
        from resilient_etl.health import check_health
        from resilient_etl.notifications.alerts import Alerter
        from resilient_etl.schema import health_status

        doc = check_health()
        now = dt.datetime.now(dt.UTC)
        current = component_statuses(doc)
        previous: dict[str, str] = {}
        since: dict[str, dt.datetime] = {}
        try:
            self.warehouse.ensure_schema()
            with self.warehouse.begin() as conn:
                for r in conn.execute(select(health_status)):
                    previous[r.component], since[r.component] = r.status, r.changed_at
        except Exception as exc:  # boundary: the warehouse may be the component that is down
            self.log.error("Previous health unknown (%s): every degraded component alerts", type(exc).__name__)
        changed = transitions(previous, {c: s for c, (s, _) in current.items()})
        alerter = Alerter(warehouse=self.warehouse)
        unconfigured = not_configured(doc)
        for component, (before, after) in changed.items():
            task = f"health:{component}"
            if component in unconfigured:  # optional and not set up: reported, never an incident
                self.log.info("Health of %s: %s (not configured; no alert)", component, after)
                continue
            if after == "pass":
                self.log.info("Health of %s recovered (%s -> pass)", component, before)
                alerter.recover_task(dag_id=self.dag_id, task_id=task, run_id=context["run_id"])
                continue
            exc = HealthCheckError(f"health check {component}: {after} ({current[component][1]})", component=component, status=after)
            self.log.warning("Health of %s changed %s -> %s: %s", component, before or "pass", after, current[component][1])
            alerter.failure(exc, dag_id=self.dag_id, task_id=task, run_id=context["run_id"], severity=Severity.SEV3 if after == "warn" else None)
        try:
            with self.warehouse.begin() as conn:
                rows = [
                    {"component": c, "status": s, "changed_at": now if c in changed or c not in since else since[c], "checked_at": now, "output": out}
                    for c, (s, out) in current.items()
                ]
                self.warehouse.upsert(conn, health_status, rows, ["component"])
        except Exception as exc:  # boundary: recorded next time the warehouse answers
            self.log.error("Health status not recorded: %s", type(exc).__name__)
        self.log.info("Health: %s %s", doc["status"], {c: s for c, (s, _) in current.items()})
        return doc
