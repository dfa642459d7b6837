"""
The health document (IETF draft ``draft-inadarei-api-health-check``, ``application/health+json``):
statuses, one measurement, the document built from the checks map, and its reading as per-component
statuses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilient_etl.config.models import Limits

MEDIA_TYPE = "application/health+json"
PASS, WARN, FAIL = "pass", "warn", "fail"
_ORDER = {PASS: 0, WARN: 1, FAIL: 2}
EXIT_CODES = {PASS: 0, WARN: 1, FAIL: 2}


@dataclass
class Observation:
    """One measurement of one component (an entry of the document's ``checks`` map)."""

    component_id: str
    component_type: str
    status: str
    observed_value: Any = None
    observed_unit: str | None = None
    output: str = ""
    time: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"))
    configured: bool = True  # False: an optional component nobody set up (warn, never an incident)

    def as_json(self) -> dict[str, Any]:
        doc = {"componentId": self.component_id, "componentType": self.component_type, "status": self.status, "time": self.time}
        if not self.configured:
            doc["configured"] = False
        if self.observed_value is not None:
            doc["observedValue"] = self.observed_value
        if self.observed_unit:
            doc["observedUnit"] = self.observed_unit
        if self.output:
            doc["output"] = self.output
        return doc


def above(value: float, limits: Limits) -> str:
    """Status of a measurement where more is worse (latency)."""
    return FAIL if value > limits.fail else WARN if value > limits.warn else PASS


def below(value: float, limits: Limits) -> str:
    """Status of a measurement where less is worse (free space, quota headroom)."""
    return FAIL if value < limits.fail else WARN if value < limits.warn else PASS


def worst(statuses: list[str]) -> str:
    """Return the worst of ``statuses`` (``pass`` for none)."""
    return max(statuses, key=_ORDER.__getitem__, default=PASS)


def document(checks: dict[str, list[Observation]]) -> dict[str, Any]:
    """Build the health+json document from the checks map."""
    try:
        release = version("resilient-etl")
    except PackageNotFoundError:
        release = "unknown"
    status = worst([o.status for obs in checks.values() for o in obs])
    return {
        "status": status,
        "version": release.split(".")[0],
        "releaseId": release,
        "serviceId": "resilient-etl",
        "description": "supplier onboarding pipeline and its dependencies",
        "checks": {name: [o.as_json() for o in obs] for name, obs in sorted(checks.items())},
    }
