"""Progress of long work: done/total, rate, ETA and time spent waiting, logged at a steady pace."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    """Format seconds (rounded) as ``1h02m``, ``8m17s`` or ``42s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ProgressLog:
    """
    Report progress every ``every_seconds`` or every ``every_items``, whichever comes first, and at the end.

    Call it with ``(done, total)`` of this try's work as often as convenient (after each item): it
    decides when to log.
    Each report is also handed to ``on_report`` (the task's ``task_state_store``), so what the UI
    shows and what the log says are the same numbers.

    :param label: what is being done, first in the line (``companies``)
    :param every_seconds: the longest silence between two reports
    :param every_items: report after this many more items even when faster
    :param waited: seconds spent waiting so far (the quota pacer's total), reported when given
    :param on_report: called with each report's values
    :param clock: monotonic seconds (tests pass their own)
    """

    def __init__(
        self,
        label: str,
        *,
        every_seconds: float = 30.0,
        every_items: int = 250,
        waited: Callable[[], float] | None = None,
        on_report: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.label = label
        self.every_seconds = every_seconds
        self.every_items = every_items
        self.waited = waited
        self.on_report = on_report
        self.clock = clock
        self.log = logger
        self.started = clock()
        self._last_at = self.started
        self._last_done = 0

    def report(self, done: int, total: int) -> dict[str, Any]:
        """Return the values of a report now (pure apart from the clock and ``waited``)."""
        now = self.clock()
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        values: dict[str, Any] = {
            "done": done,
            "total": total,
            "elapsed_seconds": round(elapsed, 1),
            "rate_per_second": round(rate, 3) if rate else None,
            "eta_seconds": round((total - done) / rate, 1) if rate else None,
        }
        if self.waited is not None:
            values["waiting_seconds"] = round(self.waited(), 1)
        return values

    def __call__(self, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` are done; log and report when one is due."""
        now = self.clock()
        due = done >= total or now - self._last_at >= self.every_seconds or done - self._last_done >= self.every_items
        if not due:
            return
        values = self.report(done, total)
        self._last_at, self._last_done = now, done
        share = f"{done / total:.0%}" if total else "100%"
        rate = f"{values['rate_per_second']:.2f}/s" if values["rate_per_second"] else "rate -"
        eta = "done" if done >= total else (f"ETA {_duration(values['eta_seconds'])}" if values["eta_seconds"] is not None else "ETA -")
        waiting = f", {_duration(values['waiting_seconds'])} waiting for quota" if "waiting_seconds" in values else ""
        self.log.info(
            "%s: %s/%s (%s), %s, %s, %s elapsed%s", self.label, done, total, share, rate, eta, _duration(values["elapsed_seconds"]), waiting
        )
        if self.on_report is not None:
            self.on_report(values)
