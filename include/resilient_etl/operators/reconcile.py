"""Operator reconciling a run and archiving its files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resilient_etl.operators.base import LandingOperator
from resilient_etl.pipeline.reconcile import reconcile


class ReconcileRunOperator(LandingOperator):
    """
    Check rows_in = loaded + quarantined + pending, record the run in ``pipeline_runs``, archive files.

    The returned summary is the run's XCom for the UI and downstream tasks.

    :param archive_dir: the configured archive folder
    """

    def __init__(self, *, archive_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.archive_dir = str(archive_dir)

    def execute(self, context: Any) -> dict[str, Any]:
        summary = reconcile(
            self.warehouse, run_id=self.run_id(context), dag_id=context["dag"].dag_id, landing_dir=self.landing, archive_dir=Path(self.archive_dir)
        )
        self.log.info(
            "Reconciliation: rows_in=%s loaded=%s quarantined=%s pending=%s",
            summary["rows_in"],
            summary["rows_loaded"],
            summary["rows_quarantined"],
            summary["rows_pending"],
        )
        return summary
