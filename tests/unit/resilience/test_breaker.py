"""The shared circuit breaker's state machine on the SQL store (a SQLite file), with a controllable clock."""

from __future__ import annotations

import pybreaker
import pytest
from sqlalchemy import select

from _support.clock import Clock
from resilient_etl.config import BreakerPolicy
from resilient_etl.exceptions import ApiClientError, ApiServerError, BreakerOpenError
from resilient_etl.hooks.shared_state import BreakerEventRecorder
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import breaker_events
from resilient_etl.resilience.breaker import SharedCircuitBreaker, breaker_states, trip_reason
from resilient_etl.resilience.stores.base import SharedStore, WindowCounts
from resilient_etl.resilience.stores.memory import MemoryStore
from resilient_etl.resilience.stores.sql import SqlStore

POLICY = BreakerPolicy(name="companies_house", fail_max=3, failure_rate_threshold=0.5, minimum_calls=6, window_seconds=60, reset_timeout_seconds=30)


class Recorder(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []

    def state_change(self, cb, old_state, new_state) -> None:
        self.changes.append((old_state.name, new_state.name))


@pytest.fixture
def warehouse(sqlite_warehouse) -> WarehouseHook:
    hook = WarehouseHook()
    hook.ensure_schema()
    return hook


@pytest.fixture(params=["sql", "memory"])
def store(request, warehouse: WarehouseHook) -> SharedStore:
    """The same state machine on each store: the warehouse tables (SQLite) and this process's memory."""
    return SqlStore(warehouse.engine) if request.param == "sql" else MemoryStore()


def _breaker(store: SharedStore, clock: Clock, policy: BreakerPolicy = POLICY, *listeners) -> SharedCircuitBreaker:
    return SharedCircuitBreaker(policy, store, listeners=list(listeners), clock=clock)


def _fail() -> None:
    raise ApiServerError("503", service="companies_house", status_code=503)


def _ok() -> str:
    return "ok"


def test_trip_rules_are_pure() -> None:
    assert trip_reason(POLICY, WindowCounts(calls=2, failures=2, consecutive_failures=2)) is None
    assert "3 consecutive failures" in trip_reason(POLICY, WindowCounts(calls=3, failures=3, consecutive_failures=3))
    assert trip_reason(POLICY, WindowCounts(calls=5, failures=3, consecutive_failures=1)) is None  # under minimum calls
    assert "failure rate 3/6 = 50%" in trip_reason(POLICY, WindowCounts(calls=6, failures=3, consecutive_failures=1))
    assert trip_reason(POLICY, WindowCounts(calls=7, failures=3, consecutive_failures=1)) is None  # 43 %


def test_consecutive_failures_open_it_and_calls_are_refused(warehouse, store) -> None:
    clock, listener = Clock(), Recorder()
    cb = _breaker(store, clock, POLICY, listener, BreakerEventRecorder(warehouse))
    for _ in range(3):
        with pytest.raises(ApiServerError):
            cb.call(_fail)
    assert cb.current_state == "open"
    with pytest.raises(BreakerOpenError) as info:
        cb.call(_ok)
    assert info.value.retry_at == clock.now + 30 and info.value.breaker == "companies_house"
    assert listener.changes == [("closed", "open")]
    with warehouse.begin() as conn:
        (event,) = conn.execute(select(breaker_events)).all()
    assert (event.from_state, event.to_state, event.consecutive_failures) == ("closed", "open", 3)
    assert "3 consecutive failures" in event.reason and "ApiServerError (status 503)" in event.reason


def test_failure_rate_in_the_window_opens_it(warehouse, store) -> None:
    clock = Clock()
    cb = _breaker(store, clock)
    for fn in (_fail, _ok, _fail, _ok, _fail, _ok):  # never 3 in a row, but 3/6 failed
        try:
            cb.call(fn)
        except ApiServerError:
            pass
        clock.now += 1
    assert cb.current_state == "closed"  # the last call succeeded: 3/6 reached only on a failure
    with pytest.raises(ApiServerError):
        cb.call(_fail)
    assert cb.current_state == "open"
    assert "failure rate 4/7" in cb.last_reason


def test_old_failures_leave_the_window(warehouse, store) -> None:
    clock = Clock()
    cb = _breaker(store, clock, BreakerPolicy(name="w", fail_max=100, failure_rate_threshold=0.5, minimum_calls=4, window_seconds=10))
    for _ in range(3):
        with pytest.raises(ApiServerError):
            cb.call(_fail)
    clock.now += 30  # those failures are now outside the window
    for _ in range(3):
        cb.call(_ok)
    with pytest.raises(ApiServerError):
        cb.call(_fail)
    assert cb.current_state == "closed"  # 1/4 in the window, not 4/7


def test_permanent_errors_and_not_found_answers_never_count(warehouse, store) -> None:
    cb = _breaker(store, Clock())
    for _ in range(10):
        with pytest.raises(ApiClientError):
            cb.call(lambda: (_ for _ in ()).throw(ApiClientError("400", service="x", status_code=400)))
        assert cb.call(lambda: None) is None  # a 404 is returned as None by the hooks: a success
    assert cb.current_state == "closed"
    assert cb.snapshot().consecutive_failures == 0


def test_one_probe_after_the_timeout_then_closed(warehouse, store) -> None:
    clock, listener = Clock(), Recorder()
    cb = _breaker(store, clock, POLICY, listener)
    other = _breaker(store, clock)  # another worker on the same store
    for _ in range(3):
        with pytest.raises(ApiServerError):
            cb.call(_fail)
    clock.now += 30
    seen_by_other: list[str] = []

    def probe() -> str:
        with pytest.raises(BreakerOpenError, match="another worker is probing"):
            other.call(_ok)  # while the probe is in flight, nobody else gets through
        seen_by_other.append(other.current_state)
        return "recovered"

    assert cb.call(probe) == "recovered"
    assert seen_by_other == ["half-open"]
    assert cb.current_state == "closed"
    assert listener.changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
    assert other.call(_ok) == "ok"


def test_waiting_until_the_reset_timeout_then_the_next_call_is_the_probe(warehouse, store) -> None:
    clock = Clock()
    cb, other = _breaker(store, clock), _breaker(store, clock)
    assert not cb.waiting()
    for _ in range(3):
        with pytest.raises(ApiServerError):
            cb.call(_fail)
    assert cb.waiting()
    clock.now += 29.9
    assert cb.waiting()
    clock.now += 0.2
    assert not cb.waiting() and cb.current_state == "open"  # due: a caller may probe

    def probe() -> str:
        assert not other.waiting()  # half-open: not waiting, though a call is refused while this probe is in flight
        with pytest.raises(BreakerOpenError, match="another worker is probing"):
            other.call(_ok)
        return "ok"

    assert cb.call(probe) == "ok" and not cb.waiting()


def test_failed_probe_reopens_for_another_timeout(warehouse, store) -> None:
    clock = Clock()
    cb = _breaker(store, clock)
    for _ in range(3):
        with pytest.raises(ApiServerError):
            cb.call(_fail)
    clock.now += 31
    with pytest.raises(ApiServerError):
        cb.call(_fail)
    snap = cb.snapshot()
    assert snap.state == "open" and snap.opened_at == clock.now
    assert "probe failed" in cb.last_reason
    clock.now += 29
    with pytest.raises(BreakerOpenError):
        cb.call(_ok)
    clock.now += 1
    assert cb.call(_ok) == "ok" and cb.current_state == "closed"


def test_success_threshold_needs_several_probes(warehouse, store) -> None:
    clock = Clock()
    cb = _breaker(store, clock, BreakerPolicy(name="s", fail_max=1, reset_timeout_seconds=5, success_threshold=2))
    with pytest.raises(ApiServerError):
        cb.call(_fail)
    clock.now += 5
    cb.call(_ok)
    assert cb.current_state == "half-open"
    cb.call(_ok)  # the lease was released by the first success: the next probe may go
    assert cb.current_state == "closed"


def test_a_crashed_probe_does_not_block_forever(warehouse, store) -> None:
    clock = Clock()
    policy = BreakerPolicy(name="c", fail_max=1, reset_timeout_seconds=10)
    cb = _breaker(store, clock, policy)
    with pytest.raises(ApiServerError):
        cb.call(_fail)
    clock.now += 10

    assert store.transition("c", expected="open", new="half-open", now=clock.now, lease=policy.probe_lease, opened_at=cb.snapshot().opened_at)
    # that worker died holding the lease
    with pytest.raises(BreakerOpenError):
        cb.call(_ok)
    clock.now += policy.probe_lease
    assert cb.call(_ok) == "ok" and cb.current_state == "closed"


def test_breaker_states_report(warehouse, store) -> None:
    clock = Clock()
    cb = _breaker(store, clock)
    for _ in range(3):
        with pytest.raises(ApiServerError):
            cb.call(_fail)
    clock.now += 10
    report = breaker_states(store, [POLICY, BreakerPolicy(name="postcodes_io")], now=clock.now)
    assert report[0]["name"] == "companies_house" and report[0]["state"] == "open"
    assert report[0]["seconds_to_probe"] == 20.0
    assert report[1] == {"name": "postcodes_io", "state": "closed", "consecutive_failures": 0}


def test_a_worker_learns_of_an_open_breaker_within_the_sync_interval(warehouse, store) -> None:
    clock = Clock()
    a, b = _breaker(store, clock), _breaker(store, clock)
    assert b.call(_ok) == "ok"  # b has just looked: closed
    for _ in range(3):
        with pytest.raises(ApiServerError):
            a.call(_fail)
    clock.now += POLICY.sync_seconds / 2
    assert b.call(_ok) == "ok"  # b acts on its recent view for at most sync_seconds …
    clock.now += POLICY.sync_seconds
    with pytest.raises(BreakerOpenError):
        b.call(_ok)  # … then reads the shared state


def test_a_failure_makes_the_worker_look_at_once(warehouse, store) -> None:
    clock = Clock()
    a, b = _breaker(store, clock), _breaker(store, clock)
    b.call(_ok)
    for _ in range(3):
        with pytest.raises(ApiServerError):
            a.call(_fail)
    with pytest.raises(ApiServerError):
        b.call(_fail)  # within its sync interval, but this failure sends it to the store next time
    with pytest.raises(BreakerOpenError):
        b.call(_ok)


def test_successes_reach_the_shared_window_when_flushed(warehouse, store) -> None:
    clock = Clock()
    cb = _breaker(store, clock, BreakerPolicy(name="f", fail_max=100, failure_rate_threshold=0.5, minimum_calls=4))
    for _ in range(5):
        cb.call(_ok)
    cb.flush()
    with pytest.raises(ApiServerError):
        cb.call(_fail)
    assert (cb.last_counts.calls, cb.last_counts.failures) == (6, 1)
    assert cb.current_state == "closed"  # 1/6, not 1/1
