"""Operator validating staged supplier rows under the data-quality gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resilient_etl.operators.base import LandingOperator
from resilient_etl.pipeline.validate import validate_staged


class ValidateSuppliersOperator(LandingOperator):
    """
    Validate the run's staged rows; quarantine bad rows; reject files over a quality ``fail`` threshold.

    :param quality: the ``quality`` thresholds of the config (None: no gate)
    :param rejected_dir: where a file that fails the gate goes, with its report
    """

    def __init__(self, *, quality: Any = None, rejected_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.quality = quality
        self.rejected_dir = str(rejected_dir)

    def execute(self, context: Any) -> dict[str, Any]:
        summary = validate_staged(
            self.warehouse, run_id=self.run_id(context), thresholds=self.quality, landing_dir=self.landing, rejected_dir=Path(self.rejected_dir)
        )
        self.log.info(
            "Validated %s rows: %s valid, %s quarantined %s; quality %s",
            summary["rows_checked"],
            summary["rows_valid"],
            summary["rows_quarantined"],
            summary["by_category"],
            summary["quality"],
        )
        for source_file, rules in summary["warnings"].items():
            self.log.warning("Data-quality warning: %s over the warn threshold of %s", source_file, ", ".join(rules))
        return summary
