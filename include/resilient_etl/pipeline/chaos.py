"""
Fault injection at named points of the pipeline, off unless ``RESILIENT_ETL_CHAOS`` is set.

``RESILIENT_ETL_CHAOS`` holds JSON: ``{"<point>": {"delay": seconds, "fail_after": n}}``. ``delay``
sleeps at every pass of the point; ``fail_after`` lets ``n`` passes through, then raises
:class:`ChaosError` at every later one. Points: ``load.batch`` (after a batch commits),
``load.chunk`` (after a chunk's savepoint is released). Drills and tests use it; production never
sets it.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from functools import lru_cache
from typing import Any

from resilient_etl.exceptions import ResilientEtlError

CHAOS_ENV = "RESILIENT_ETL_CHAOS"
_passes: Counter[str] = Counter()


class ChaosError(ResilientEtlError):
    """A failure injected on purpose (a drill or a test)."""


@lru_cache(maxsize=8)
def _plan(raw: str) -> dict[str, dict[str, Any]]:
    return json.loads(raw) if raw else {}


def inject(point: str) -> None:
    """
    Apply the fault configured for ``point``, if any.

    :param point: the injection point's name
    :raises ChaosError: once the point's ``fail_after`` passes are used up
    """
    spec = _plan(os.environ.get(CHAOS_ENV, "")).get(point)
    if not spec:
        return
    _passes[point] += 1
    if spec.get("delay"):
        time.sleep(float(spec["delay"]))
    if "fail_after" in spec and _passes[point] > int(spec["fail_after"]):
        raise ChaosError(f"chaos: injected failure at {point} (pass {_passes[point]})")


def reset() -> None:
    """Forget how often each point was passed (a new process starts at zero anyway)."""
    _passes.clear()
