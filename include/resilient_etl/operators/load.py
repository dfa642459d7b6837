"""Operator loading enriched suppliers into the warehouse."""

from __future__ import annotations

from typing import Any

from resilient_etl.operators.base import WarehouseOperator
from resilient_etl.pipeline.load import load


class LoadSuppliersOperator(WarehouseOperator):
    """
    Upsert the run's enriched rows into ``suppliers``, one transaction per batch.

    :param batch_size: rows per committed batch
    """

    def __init__(self, *, batch_size: int = 500, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size

    def execute(self, context: Any) -> dict[str, Any]:
        summary = load(self.warehouse, run_id=self.run_id(context), batch_size=self.batch_size)
        self.log.info("Loaded in %s batches: %s", summary["batches"], summary["by_outcome"])
        return summary
