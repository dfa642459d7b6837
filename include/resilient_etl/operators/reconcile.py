"""Operator reconciling a run and archiving its files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resilient_etl.operators.base import WarehouseOperator, folder
from resilient_etl.pipeline.reconcile import reconcile


class ReconcileRunOperator(WarehouseOperator):
    """
    Check rows_in = loaded + quarantined + pending, record the run in ``pipeline_runs``, archive files.

    The returned summary is the run's XCom for the UI and downstream tasks.

    :param default_landing_dir: the configured landing folder
    :param archive_dir: the configured archive folder
    :param landing_dir: a one-off override of the landing folder (templated; empty = configured)
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "landing_dir")

    def __init__(
        self,
        *,
        default_landing_dir: str | Path,
        archive_dir: str | Path,
        landing_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.default_landing_dir = str(default_landing_dir)
        self.archive_dir = str(archive_dir)
        self.landing_dir = landing_dir

    def execute(self, context: Any) -> dict[str, Any]:
        summary = reconcile(
            self.warehouse,
            run_id=self.run_id(context),
            dag_id=context["dag"].dag_id,
            landing_dir=folder(self.landing_dir, self.default_landing_dir),
            archive_dir=Path(self.archive_dir),
        )
        self.log.info(
            "Reconciliation: rows_in=%s loaded=%s quarantined=%s pending=%s",
            summary["rows_in"], summary["rows_loaded"], summary["rows_quarantined"], summary["rows_pending"],
        )
        return summary
