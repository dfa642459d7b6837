"""A store in this process's memory: tests, and tools that run alone."""

from __future__ import annotations

import threading
from dataclasses import replace

from resilient_etl.resilience.stores.base import CLOSED, FRESH, HALF_OPEN, OPEN, BreakerSnapshot, WindowCounts, bucket_start


class MemoryStore:
    """Pacing slots and breaker state in dictionaries, behind one lock (every method is atomic)."""

    description = "MemoryStore (this process only)"

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._breakers: dict[str, BreakerSnapshot] = {}
        self._buckets: dict[str, dict[int, list[int]]] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, *, interval: float, now: float) -> float:
        with self._lock:
            slot = max(self._next.get(key, 0.0), now)
            self._next[key] = slot + interval
            return slot

    def defer(self, key: str, *, until: float) -> None:
        with self._lock:
            self._next[key] = max(self._next.get(key, 0.0), until)

    def read(self, name: str) -> BreakerSnapshot:
        with self._lock:
            return self._breakers.get(name, FRESH)

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        with self._lock:
            snap = self._breakers.get(name, FRESH)
            consecutive = (0 if successes else snap.consecutive_failures) + int(failed)
            self._breakers[name] = replace(snap, consecutive_failures=consecutive)
            buckets = self._buckets.setdefault(name, {})
            counts = buckets.setdefault(bucket_start(now, bucket), [0, 0])
            counts[0] += successes + int(failed)
            counts[1] += int(failed)
            for start in [b for b in buckets if b <= now - window - bucket]:
                del buckets[start]
            live = [c for b, c in buckets.items() if b > now - window]
            return WindowCounts(sum(c[0] for c in live), sum(c[1] for c in live), consecutive)

    def transition(self, name: str, *, expected: str, new: str, now: float, lease: float = 0.0, opened_at: float | None = None) -> bool:
        with self._lock:
            snap = self._breakers.get(name, FRESH)
            if snap.state != expected or (opened_at is not None and snap.opened_at != opened_at):
                return False
            if new == OPEN:
                snap = replace(snap, state=OPEN, opened_at=now, probe_until=0.0, half_open_successes=0)
            elif new == HALF_OPEN:
                snap = replace(snap, state=HALF_OPEN, probe_until=now + lease, half_open_successes=0)
            else:
                snap = replace(snap, state=CLOSED, probe_until=0.0, half_open_successes=0, consecutive_failures=0)
                self._buckets.pop(name, None)
            self._breakers[name] = snap
            return True

    def acquire_probe(self, name: str, *, now: float, lease: float) -> bool:
        with self._lock:
            snap = self._breakers.get(name, FRESH)
            if snap.state != HALF_OPEN or snap.probe_until > now:
                return False
            self._breakers[name] = replace(snap, probe_until=now + lease)
            return True

    def probe_succeeded(self, name: str) -> int:
        with self._lock:
            snap = self._breakers.get(name, FRESH)
            if snap.state != HALF_OPEN:
                return 0
            self._breakers[name] = replace(snap, probe_until=0.0, half_open_successes=snap.half_open_successes + 1)
            return snap.half_open_successes + 1
