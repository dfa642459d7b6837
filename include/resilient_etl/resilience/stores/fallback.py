"""
What happens when the shared store stops answering, decided once for every caller.

pybreaker's ``CircuitRedisStorage`` falls back to a declared state when Redis fails; here the declared
fallback is another store every worker can also reach (the warehouse tables), so breakers stay shared
breakers and pacing stays shared pacing (ADR 0004, runbook ``shared-state-unavailable``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from resilient_etl.resilience.stores.base import BreakerSnapshot, SharedStore, WindowCounts

log = logging.getLogger(__name__)


class FallbackStore:
    """
    Use ``primary``; once it fails with one of ``unavailable``, use ``fallback`` for good (this process).

    :param primary: the preferred store (Redis)
    :param fallback: builds the fallback store on first need (the SQL store)
    :param unavailable: the errors that mean the primary cannot be reached
    :param what: names the primary in the warning
    """

    def __init__(self, primary: SharedStore, fallback: Callable[[], SharedStore], *, unavailable: tuple[type[BaseException], ...], what: str) -> None:
        self.primary = primary
        self._fallback = fallback
        self.unavailable = unavailable
        self.what = what
        self.degraded: SharedStore | None = None

    @property
    def description(self) -> str:
        """Name the store in use: the primary, or the one it fell back to."""
        if self.degraded is not None:
            return f"{type(self.degraded).__name__} (fell back: {self.what} unavailable)"
        return f"{type(self.primary).__name__} (falls back to the warehouse when {self.what} is unavailable)"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.degraded is None:
            try:
                return getattr(self.primary, method)(*args, **kwargs)
            except self.unavailable as exc:
                log.warning(
                    "Shared-state store %s unavailable (%s): falling back to the warehouse tables for this process", self.what, type(exc).__name__
                )
                self.degraded = self._fallback()
        return getattr(self.degraded, method)(*args, **kwargs)

    def claim(self, key: str, *, interval: float, now: float) -> float:
        return float(self._call("claim", key, interval=interval, now=now))

    def defer(self, key: str, *, until: float) -> None:
        self._call("defer", key, until=until)

    def read(self, name: str) -> BreakerSnapshot:
        snap: BreakerSnapshot = self._call("read", name)
        return snap

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        counts: WindowCounts = self._call("record", name, successes=successes, failed=failed, now=now, window=window, bucket=bucket)
        return counts

    def transition(self, name: str, *, expected: str, new: str, now: float, lease: float = 0.0, opened_at: float | None = None) -> bool:
        return bool(self._call("transition", name, expected=expected, new=new, now=now, lease=lease, opened_at=opened_at))

    def acquire_probe(self, name: str, *, now: float, lease: float) -> bool:
        return bool(self._call("acquire_probe", name, now=now, lease=lease))

    def probe_succeeded(self, name: str) -> int:
        return int(self._call("probe_succeeded", name))
