"""A controllable clock for code that takes ``clock=`` (breakers, pacing, progress): time passes when a test says so."""

from __future__ import annotations


class Clock:
    """Unix time that stands still until :meth:`advance` (or an assignment to ``now``) moves it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
