"""Operator staging landing CSV files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resilient_etl.operators.base import LandingOperator
from resilient_etl.pipeline.extract import extract


class ExtractSuppliersOperator(LandingOperator):
    """
    Stage every supplier CSV in the landing folder; move unreadable files to rejected/.

    :param rejected_dir: the configured rejected folder
    """

    def __init__(self, *, rejected_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rejected_dir = str(rejected_dir)

    def execute(self, context: Any) -> dict[str, Any]:
        landing = self.landing
        self.log.info("Extracting from %s", landing)
        summary = extract(
            self.warehouse,
            landing_dir=landing,
            rejected_dir=Path(self.rejected_dir),
            run_id=self.run_id(context),
            full_refresh=bool(context["params"].get("full_refresh", False)),
        )
        self.log.info(
            "Staged %s rows from %s files; rejected %s files", summary["rows_staged"], len(summary["files"]), len(summary["rejected_files"])
        )
        return summary
