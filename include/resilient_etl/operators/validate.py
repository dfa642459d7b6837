"""Operator validating staged supplier rows."""

from __future__ import annotations

from typing import Any

from resilient_etl.operators.base import WarehouseOperator
from resilient_etl.pipeline.validate import validate_staged


class ValidateSuppliersOperator(WarehouseOperator):
    """Validate the run's staged rows; quarantine the bad ones with their reasons."""

    def execute(self, context: Any) -> dict[str, Any]:
        summary = validate_staged(self.warehouse, run_id=self.run_id(context))
        self.log.info("Validated %s rows: %s valid, %s quarantined %s", summary["rows_checked"], summary["rows_valid"], summary["rows_quarantined"], summary["by_category"])
        return summary
