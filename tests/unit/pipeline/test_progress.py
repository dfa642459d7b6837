"""Progress lines: done/total, rate, ETA and quota waits, at most every N seconds or items, and at the end."""

from __future__ import annotations

import logging

from _support.clock import Clock
from resilient_etl.pipeline.progress import ProgressLog


def test_reports_every_30_seconds_with_rate_eta_and_quota_waits(caplog) -> None:
    clock, reported = Clock(1000.0), []
    waited = {"s": 0.0}
    progress = ProgressLog("companies", every_seconds=30, every_items=10_000, waited=lambda: waited["s"], on_report=reported.append, clock=clock)
    with caplog.at_level(logging.INFO, logger="resilient_etl.pipeline.progress"):
        for done in range(1, 979):
            clock.now += 0.5  # 600 per 5 minutes: one lookup every 0.5 s
            waited["s"] += 0.45
            progress(done, 978)
    # 489 s of work: a line at 30 s, 60 s, ... and the final one
    assert len(reported) == 16 + 1
    first = reported[0]
    assert first["done"] == 60 and first["rate_per_second"] == 2.0 and first["eta_seconds"] == 459.0
    assert "companies: 60/978 (6%), 2.00/s, ETA 7m39s, 30s elapsed, 27s waiting for quota" in caplog.text
    assert reported[-1]["done"] == 978 and "companies: 978/978 (100%), 2.00/s, done, 8m09s elapsed" in caplog.text


def test_fast_work_reports_every_n_items_and_silence_is_bounded() -> None:
    clock, reported = Clock(1000.0), []
    progress = ProgressLog("postcodes", every_seconds=30, every_items=100, on_report=reported.append, clock=clock)
    for done in range(1, 351):
        clock.now += 0.001
        progress(done, 350)
    assert [r["done"] for r in reported] == [100, 200, 300, 350]
    assert "waiting_seconds" not in reported[0]


def test_nothing_to_do_still_says_so() -> None:
    reported = []
    ProgressLog("companies", on_report=reported.append, clock=Clock(1000.0))(0, 0)
    assert reported[0]["done"] == 0 and reported[0]["total"] == 0
