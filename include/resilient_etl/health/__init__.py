"""Health checks: the document model, the checks, the runner, and the monitor the ``pipeline_health`` DAG runs."""

from __future__ import annotations

from resilient_etl.health.model import EXIT_CODES, FAIL, MEDIA_TYPE, PASS, WARN, Observation, worst
from resilient_etl.health.runner import check_health, run_checks

__all__ = ["EXIT_CODES", "FAIL", "MEDIA_TYPE", "PASS", "WARN", "Observation", "check_health", "run_checks", "worst"]
