"""Operator loading enriched suppliers into the warehouse."""

from __future__ import annotations

from typing import Any

from resilient_etl.operators.base import WarehouseOperator
from resilient_etl.pipeline.checkpoints import committed_chunks
from resilient_etl.pipeline.load import load


class LoadSuppliersOperator(WarehouseOperator):
    """
    Upsert the run's enriched rows into ``suppliers``: a transaction per batch, its lines of each file in
    one statement under a savepoint with a checkpoint (``chunk_size`` lines at a time when that statement
    is refused); a retried or cleared task resumes after the last committed chunk.

    :param batch_size: lines per committed batch
    :param chunk_size: lines per savepoint and checkpoint of a batch whose statement was refused
    :param max_quarantine_share: fail a batch when the database rejects more of its rows than this
    """

    def __init__(self, *, batch_size: int = 20_000, chunk_size: int = 100, max_quarantine_share: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.max_quarantine_share = max_quarantine_share

    def execute(self, context: Any) -> dict[str, Any]:
        ti = context["ti"]
        identity = {"dag_id": ti.dag_id, "task_id": ti.task_id, "map_index": ti.map_index if ti.map_index is not None else -1}
        chunks, rows = committed_chunks(self.warehouse, run_id=self.run_id(context), **identity)
        if chunks:
            self.log.info("Resuming: %s chunks (%s rows) were committed by an earlier try", chunks, rows)
        summary = load(
            self.warehouse,
            run_id=self.run_id(context),
            batch_size=self.batch_size,
            chunk_size=self.chunk_size,
            max_quarantine_share=self.max_quarantine_share,
            retry_policy=self.database_retry_policy,
            hostname=getattr(context["ti"], "hostname", None),
            try_number=getattr(context["ti"], "try_number", None),
            **identity,
        )
        summary["resumed_after_chunks"] = chunks
        self.log.info("Loaded in %s batches, %s chunks: %s", summary["batches"], summary["chunks"], summary["by_outcome"])
        return summary
