"""Sandbox building blocks as pure objects: quota windows, fault bursts, deterministic data."""

from __future__ import annotations

import csv
from pathlib import Path

from _support.clock import Clock
from resilient_etl_devtools.sandbox.companies_app import RateLimiter
from resilient_etl_devtools.sandbox.data import company_register, write_sample_csv
from resilient_etl_devtools.sandbox.faults import FaultRegistry, FaultSpec


def test_fixed_window_quota() -> None:
    clock = Clock(1000.0)
    limiter = RateLimiter(limit=3, window_seconds=10, clock=clock)
    results = [limiter.hit("k") for _ in range(4)]
    assert [ok for ok, _ in results] == [True, True, True, False]
    assert [h["X-Ratelimit-Remain"] for _, h in results] == ["2", "1", "0", "0"]
    assert results[0][1]["X-Ratelimit-Reset"] == "1010"
    assert results[0][1]["X-Ratelimit-Window"] == "10s"
    assert limiter.hit("other")[0] is True  # per key
    clock.now = 1010.0
    ok, headers = limiter.hit("k")
    assert ok and headers["X-Ratelimit-Remain"] == "2" and headers["X-Ratelimit-Reset"] == "1020"
    assert RateLimiter().hit("x")[1]["X-Ratelimit-Window"] == "5m"
    clock.now = 1500.7  # a window opens on the whole second of its first request
    assert limiter.hit("late")[1]["X-Ratelimit-Reset"] == "1510"
    assert limiter.rejected == 1


def test_fault_burst_heals_after_count() -> None:
    registry = FaultRegistry()
    registry.set("company", FaultSpec(status=503, count=2))
    drawn = [registry.draw("company") for _ in range(4)]
    assert [d.status if d else None for d in drawn] == [503, 503, None, None]
    assert registry.snapshot()["requests"] == {"company": 4}
    assert registry.draw("search") is None


def test_fault_rate_and_wildcard() -> None:
    registry = FaultRegistry(seed=1)
    registry.set("*", FaultSpec(status=500, rate=0.25))
    hits = sum(registry.draw("lookup") is not None for _ in range(2000))
    assert 400 < hits < 600
    registry.clear()
    assert registry.draw("lookup") is None


def test_register_is_deterministic_and_well_formed() -> None:
    a, b = company_register(), company_register.__wrapped__(20261126, 1500)
    assert list(a.profiles) == list(b.profiles)
    assert all(len(n) == 8 for n in a.profiles)
    assert any(n.startswith("SC") for n in a.profiles) and any(n.startswith("OC") for n in a.profiles)
    llp = next(p for p in a.profiles.values() if p["type"] == "llp")
    assert "sic_codes" not in llp


def test_sample_csv_is_reproducible_and_dirty_as_asked(tmp_path: Path) -> None:
    one = write_sample_csv(tmp_path / "a.csv", rows=400, dirty_share=0.05)
    two = write_sample_csv(tmp_path / "b.csv", rows=400, dirty_share=0.05)
    assert one.path.read_bytes() == two.path.read_bytes()
    assert len(one.dirty_lines) == 20
    rows = list(csv.DictReader(one.path.open()))
    assert len(rows) == 400
    ids = [r["supplier_id"] for r in rows]
    assert len(ids) - len(set(ids)) >= 1  # the duplicate-id defect is present


def test_a_large_sample_reports_its_progress(tmp_path) -> None:
    seen: list[tuple[int, int]] = []
    drop = write_sample_csv(tmp_path / "big.csv", rows=25_000, dirty_share=0, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(10_000, 25_000), (20_000, 25_000)] and drop.rows == 25_000
