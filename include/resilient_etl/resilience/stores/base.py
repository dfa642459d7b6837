"""The shared-store interface and the values it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's shared state as read in one round trip."""

    state: str
    opened_at: float
    probe_until: float
    consecutive_failures: int
    half_open_successes: int


FRESH = BreakerSnapshot(CLOSED, 0.0, 0.0, 0, 0)


@dataclass(frozen=True)
class WindowCounts:
    """Calls and failures in the sliding window, and the current run of consecutive failures."""

    calls: int
    failures: int
    consecutive_failures: int


class SharedStore(Protocol):
    """
    Atomic operations on state shared by every worker; every method is one round trip.

    Pacing: request slots handed out one ``interval`` apart per key. Breakers: state, the failure
    window, compare-and-set transitions and the half-open probe lease.
    """

    def claim(self, key: str, *, interval: float, now: float) -> float:
        """Reserve the next pacing slot for ``key`` and return its unix time (``>= now``)."""

    def defer(self, key: str, *, until: float) -> None:
        """Push the next free pacing slot of ``key`` to no earlier than ``until``."""

    def read(self, name: str) -> BreakerSnapshot:
        """Return the breaker's state (closed when never seen)."""

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        """
        Count ``successes`` calls that succeeded and then, if ``failed``, one that failed; return the
        window's totals. (Successes are flushed in batches; a failure is recorded at once.)
        """

    def transition(self, name: str, *, expected: str, new: str, now: float, lease: float = 0.0, opened_at: float | None = None) -> bool:
        """
        Move ``expected`` -> ``new`` if the state is still ``expected`` (compare-and-set).

        Opening stamps ``opened_at``; moving to half-open grants the caller the probe lease until
        ``now + lease``; closing clears the window. ``opened_at`` (when given) must also still match,
        so two workers that saw the same open period cannot both move it on.
        """

    def acquire_probe(self, name: str, *, now: float, lease: float) -> bool:
        """In half-open, take the probe lease if nobody holds it; return whether we got it."""

    def probe_succeeded(self, name: str) -> int:
        """Count a successful probe, release the lease; return the successes so far."""


def bucket_start(now: float, size: float) -> int:
    """Return the start of the window bucket holding ``now``."""
    return int(now // size * size)


def describe(store: Any) -> str:
    """Name a store for a log line."""
    return getattr(store, "description", type(store).__name__)
