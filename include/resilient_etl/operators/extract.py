"""Operator staging landing CSV files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resilient_etl.operators.base import WarehouseOperator, folder
from resilient_etl.pipeline.extract import extract


class ExtractSuppliersOperator(WarehouseOperator):
    """
    Stage every supplier CSV in the landing folder; move unreadable files to rejected/.

    :param default_landing_dir: the configured landing folder
    :param rejected_dir: the configured rejected folder
    :param landing_dir: a one-off override of the landing folder (templated; empty = configured)
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "landing_dir")

    def __init__(
        self, *, default_landing_dir: str | Path, rejected_dir: str | Path, landing_dir: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.default_landing_dir = str(default_landing_dir)
        self.rejected_dir = str(rejected_dir)
        self.landing_dir = landing_dir

    def execute(self, context: Any) -> dict[str, Any]:
        landing = folder(self.landing_dir, self.default_landing_dir)
        self.log.info("Extracting from %s", landing)
        self.warehouse.ensure_schema()
        summary = extract(
            self.warehouse,
            landing_dir=landing,
            rejected_dir=Path(self.rejected_dir),
            run_id=self.run_id(context),
            full_refresh=bool(context["params"].get("full_refresh", False)),
        )
        self.log.info("Staged %s rows from %s files; rejected %s files", summary["rows_staged"], len(summary["files"]), len(summary["rejected_files"]))
        return summary
