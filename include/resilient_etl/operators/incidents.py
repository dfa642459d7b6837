"""Escalation of unacknowledged incidents, run on a schedule."""

from __future__ import annotations

from typing import Any

from resilient_etl.operators.base import WarehouseOperator


class EscalateIncidentsOperator(WarehouseOperator):
    """
    Take every escalation step now due on open incidents (``alerts.routes.<SEV>.escalation``).

    Returns (XCom) the ``[incident id, tier]`` pairs notified in this run.
    """

    def execute(self, context: Any) -> list[list[Any]]:
        from resilient_etl.alerting.engine import Alerter

        taken = Alerter(warehouse=self.warehouse).escalate()
        self.log.info("Escalated %s step(s): %s", len(taken), taken)
        return [list(t) for t in taken]
