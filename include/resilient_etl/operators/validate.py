"""Operator validating staged supplier rows under the data-quality gate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resilient_etl.operators.base import WarehouseOperator, folder
from resilient_etl.pipeline.validate import validate_staged


class ValidateSuppliersOperator(WarehouseOperator):
    """
    Validate the run's staged rows; quarantine bad rows; reject files over a quality ``fail`` threshold.

    :param quality: the ``quality`` thresholds of the config (None: no gate)
    :param default_landing_dir: the configured landing folder
    :param rejected_dir: where a file that fails the gate goes, with its report
    :param landing_dir: a one-off override of the landing folder (templated; empty = configured)
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "landing_dir")

    def __init__(
        self,
        *,
        quality: Any = None,
        default_landing_dir: str | Path | None = None,
        rejected_dir: str | Path | None = None,
        landing_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.quality = quality
        self.default_landing_dir = str(default_landing_dir) if default_landing_dir else None
        self.rejected_dir = str(rejected_dir) if rejected_dir else None
        self.landing_dir = landing_dir

    def execute(self, context: Any) -> dict[str, Any]:
        summary = validate_staged(
            self.warehouse,
            run_id=self.run_id(context),
            thresholds=self.quality,
            landing_dir=folder(self.landing_dir, self.default_landing_dir) if self.default_landing_dir else None,
            rejected_dir=Path(self.rejected_dir) if self.rejected_dir else None,
        )
        self.log.info(
            "Validated %s rows: %s valid, %s quarantined %s; quality %s",
            summary["rows_checked"], summary["rows_valid"], summary["rows_quarantined"], summary["by_category"], summary["quality"],
        )
        for source_file, rules in summary["warnings"].items():
            self.log.warning("Data-quality warning: %s over the warn threshold of %s", source_file, ", ".join(rules))
        return summary
