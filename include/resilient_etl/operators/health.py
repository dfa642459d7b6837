"""Scheduled health checks that alert when a component degrades and recover when it passes again."""

from __future__ import annotations

from typing import Any

from resilient_etl.operators.base import WarehouseOperator


class HealthCheckOperator(WarehouseOperator):
    """
    Check every dependency (:func:`resilient_etl.health.check_health`), record each component's
    status in ``health_status``, alert when one turns warn (SEV3) or fail (its category's severity),
    and send a recovery message when it passes again.

    Returns (XCom) the health document. The task itself succeeds whatever the health: it reports,
    the alerts carry the news (a failing task would alert a second time).
    """

    def execute(self, context: Any) -> dict[str, Any]:
        from resilient_etl.health.monitor import monitor

        return monitor(self.warehouse, dag_id=self.dag_id, run_id=context["run_id"], logger=self.log)
