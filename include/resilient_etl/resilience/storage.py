"""
State shared by every worker process: each Airflow task try is a new process, so anything that must
be coordinated (quota pacing, circuit breaker state) lives in Redis (the ``breaker_store``
connection) or, by default, in warehouse tables.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import case, insert, update
from sqlalchemy.exc import IntegrityError

from resilient_etl.schema import breaker_buckets, breaker_state, shared_pacing

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import redis

    from resilient_etl.hooks.warehouse import WarehouseHook


class PacingStore(Protocol):
    """Hands out request slots one ``interval`` apart, across processes, atomically."""

    def claim(self, key: str, *, interval: float, now: float) -> float:
        """Reserve the next slot for ``key`` and return its unix time (``>= now``)."""

    def defer(self, key: str, *, until: float) -> None:
        """Push the next free slot of ``key`` to no earlier than ``until``."""


class MemoryPacingStore:
    """A single-process store (tests, and one-process tools)."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, *, interval: float, now: float) -> float:
        with self._lock:
            slot = max(self._next.get(key, 0.0), now)
            self._next[key] = slot + interval
            return slot

    def defer(self, key: str, *, until: float) -> None:
        with self._lock:
            self._next[key] = max(self._next.get(key, 0.0), until)


class SqlPacingStore:
    """
    Pacing slots in the warehouse table ``shared_pacing``: one atomic ``UPDATE … RETURNING`` per claim.

    :param warehouse: the warehouse hook
    """

    def __init__(self, warehouse: WarehouseHook) -> None:
        self.warehouse = warehouse

    def claim(self, key: str, *, interval: float, now: float) -> float:
        t = shared_pacing
        stamp = dt.datetime.now(dt.UTC)
        later = case((t.c.next_slot_at > now, t.c.next_slot_at), else_=now)
        for _ in range(3):
            with self.warehouse.begin() as conn:
                row = conn.execute(
                    update(t).where(t.c.pacing_key == key).values(next_slot_at=later + interval, updated_at=stamp).returning(t.c.next_slot_at)
                ).first()
                if row is not None:
                    return float(row[0]) - interval
                try:
                    with conn.begin_nested():
                        conn.execute(insert(t).values(pacing_key=key, next_slot_at=now + interval, updated_at=stamp))
                    return now
                except IntegrityError:
                    continue  # another process created the row first: claim again
        raise RuntimeError(f"could not claim a pacing slot for {key}")

    def defer(self, key: str, *, until: float) -> None:
        t = shared_pacing
        with self.warehouse.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.pacing_key == key)
                .values(next_slot_at=case((t.c.next_slot_at > until, t.c.next_slot_at), else_=until), updated_at=dt.datetime.now(dt.UTC))
            )


_CLAIM = """
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
local slot = math.max(nxt, now)
redis.call('SET', KEYS[1], string.format('%.6f', slot + tonumber(ARGV[2])), 'EX', 3600)
return string.format('%.6f', slot)
"""
_DEFER = """
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('SET', KEYS[1], string.format('%.6f', math.max(nxt, tonumber(ARGV[1]))), 'EX', 3600)
return 1
"""


class RedisPacingStore:
    """
    Pacing slots in Redis, claimed by a Lua script (atomic across every worker).

    :param client: a redis client
    :param prefix: key prefix
    """

    def __init__(self, client: redis.Redis, prefix: str = "resilient_etl:pacing:") -> None:
        self.client = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._defer = client.register_script(_DEFER)

    def claim(self, key: str, *, interval: float, now: float) -> float:
        return float(self._claim(keys=[self.prefix + key], args=[repr(now), repr(interval)]))

    def defer(self, key: str, *, until: float) -> None:
        self._defer(keys=[self.prefix + key], args=[repr(until)])


def redis_client(conn_id: str) -> Any:
    """Return a Redis client for an Airflow connection (``redis://host:port/db``; db from schema or extra)."""
    import redis
    from airflow.sdk.bases.hook import BaseHook

    conn = BaseHook.get_connection(conn_id)
    db = conn.schema or conn.extra_dejson.get("db") or 0
    return redis.Redis(
        host=conn.host or "127.0.0.1",
        port=conn.port or 6379,
        db=int(db),
        password=conn.password or None,
        socket_timeout=2,
        socket_connect_timeout=2,
    )


def describe(store: Any) -> str:
    """Name a store for a log line."""
    return getattr(store, "description", type(store).__name__)


def connection_exists(conn_id: str) -> bool:
    """Return whether an Airflow connection ``conn_id`` is defined (env, secrets backend or DB)."""
    from airflow.sdk.bases.hook import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def uses_redis(kind: str, redis_conn_id: str) -> bool:
    """Return whether shared state goes to Redis: ``redis``, or ``auto`` when the connection exists."""
    return kind == "redis" or (kind == "auto" and connection_exists(redis_conn_id))


def pacing_store(kind: str, *, warehouse: WarehouseHook, redis_conn_id: str) -> PacingStore:
    """
    Return the configured shared pacing store.

    :param kind: ``redis``, ``sql`` or ``auto`` (Redis when ``redis_conn_id`` exists, else SQL)
    :param warehouse: the warehouse hook (for the SQL store)
    :param redis_conn_id: the Redis connection id
    """
    if not uses_redis(kind, redis_conn_id):
        return SqlPacingStore(warehouse)
    return _Degrading(RedisPacingStore(redis_client(redis_conn_id)), lambda: SqlPacingStore(warehouse), what=f"redis {redis_conn_id}")  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Circuit breaker state


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's shared state as read in one round trip."""

    state: str
    opened_at: float
    probe_until: float
    consecutive_failures: int
    half_open_successes: int


@dataclass(frozen=True)
class WindowCounts:
    """Calls and failures in the sliding window, and the current run of consecutive failures."""

    calls: int
    failures: int
    consecutive_failures: int


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
_FRESH = BreakerSnapshot(CLOSED, 0.0, 0.0, 0, 0)


class BreakerStore(Protocol):
    """Atomic operations on shared breaker state; every method is one round trip."""

    def read(self, name: str) -> BreakerSnapshot:
        """Return the breaker's state (closed when never seen)."""

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        """
        Count ``successes`` calls that succeeded and then, if ``failed``, one that failed; return the
        window's totals. (Successes are flushed in batches; a failure is recorded at once.)
        """

    def transition(self, name: str, *, expected: str, new: str, now: float, lease: float = 0.0,
                   opened_at: float | None = None) -> bool:
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


def _bucket(now: float, size: float) -> int:
    return int(now // size * size)


class SqlBreakerStore:
    """
    Breaker state in the warehouse (``breaker_state``, ``breaker_buckets``): works on SQLite,
    PostgreSQL and SQL Server; every compare-and-set is one conditional UPDATE.

    :param warehouse: the warehouse hook
    """

    def __init__(self, warehouse: WarehouseHook) -> None:
        self.warehouse = warehouse

    def _ensure(self, conn: Any, name: str) -> None:
        from sqlalchemy import select

        t = breaker_state
        if conn.execute(select(t.c.name).where(t.c.name == name)).first() is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(t).values(
                            name=name, state=CLOSED, opened_at=0.0, probe_until=0.0, consecutive_failures=0,
                            half_open_successes=0, updated_at=dt.datetime.now(dt.UTC),
                        )
                    )
            except IntegrityError:
                pass  # created concurrently

    def read(self, name: str) -> BreakerSnapshot:
        from sqlalchemy import select

        t = breaker_state
        with self.warehouse.begin() as conn:
            row = conn.execute(
                select(t.c.state, t.c.opened_at, t.c.probe_until, t.c.consecutive_failures, t.c.half_open_successes).where(t.c.name == name)
            ).first()
        return BreakerSnapshot(*row) if row else _FRESH

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        from sqlalchemy import delete, func, select

        t, b = breaker_state, breaker_buckets
        start = _bucket(now, bucket)
        calls, failures = successes + int(failed), int(failed)
        base = 0 if successes else t.c.consecutive_failures
        with self.warehouse.begin() as conn:
            self._ensure(conn, name)
            consecutive = conn.execute(
                update(t).where(t.c.name == name).values(consecutive_failures=base + failures).returning(t.c.consecutive_failures)
            ).scalar_one()
            bump = update(b).where(b.c.name == name, b.c.bucket_start == start).values(calls=b.c.calls + calls, failures=b.c.failures + failures)
            if not conn.execute(bump).rowcount:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(b).values(name=name, bucket_start=start, calls=calls, failures=failures))
                except IntegrityError:
                    conn.execute(bump)
                conn.execute(delete(b).where(b.c.name == name, b.c.bucket_start <= now - window - bucket))
            calls, failures = conn.execute(
                select(func.coalesce(func.sum(b.c.calls), 0), func.coalesce(func.sum(b.c.failures), 0)).where(
                    b.c.name == name, b.c.bucket_start > now - window
                )
            ).one()
        return WindowCounts(int(calls), int(failures), int(consecutive))

    def transition(self, name: str, *, expected: str, new: str, now: float, lease: float = 0.0,
                   opened_at: float | None = None) -> bool:
        from sqlalchemy import delete

        t = breaker_state
        values: dict[str, Any] = {"state": new, "updated_at": dt.datetime.now(dt.UTC)}
        if new == OPEN:
            values.update(opened_at=now, probe_until=0.0, half_open_successes=0)
        elif new == HALF_OPEN:
            values.update(probe_until=now + lease, half_open_successes=0)
        else:
            values.update(probe_until=0.0, half_open_successes=0, consecutive_failures=0)
        with self.warehouse.begin() as conn:
            self._ensure(conn, name)
            cond = (t.c.name == name) & (t.c.state == expected)
            if opened_at is not None:
                cond &= t.c.opened_at == opened_at
            won = conn.execute(update(t).where(cond).values(**values)).rowcount == 1
            if won and new == CLOSED:
                conn.execute(delete(breaker_buckets).where(breaker_buckets.c.name == name))
        return won

    def acquire_probe(self, name: str, *, now: float, lease: float) -> bool:
        t = breaker_state
        with self.warehouse.begin() as conn:
            return conn.execute(
                update(t).where(t.c.name == name, t.c.state == HALF_OPEN, t.c.probe_until <= now).values(probe_until=now + lease)
            ).rowcount == 1

    def probe_succeeded(self, name: str) -> int:
        t = breaker_state
        with self.warehouse.begin() as conn:
            row = conn.execute(
                update(t)
                .where(t.c.name == name, t.c.state == HALF_OPEN)
                .values(half_open_successes=t.c.half_open_successes + 1, probe_until=0.0)
                .returning(t.c.half_open_successes)
            ).first()
        return int(row[0]) if row else 0


_B_READ = """
local v = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probe_until', 'consecutive_failures', 'half_open_successes')
return {v[1] or 'closed', v[2] or '0', v[3] or '0', v[4] or '0', v[5] or '0'}
"""
_B_RECORD = """
local now, window, bucket = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local successes, failed = tonumber(ARGV[4]), ARGV[5] == '1'
local start = math.floor(now / bucket) * bucket
if successes > 0 then redis.call('HSET', KEYS[1], 'consecutive_failures', 0) end
local consecutive = tonumber(redis.call('HGET', KEYS[1], 'consecutive_failures') or '0')
if failed then consecutive = redis.call('HINCRBY', KEYS[1], 'consecutive_failures', 1) end
redis.call('HINCRBY', KEYS[2], tostring(start), successes + (failed and 1 or 0))
if failed then redis.call('HINCRBY', KEYS[3], tostring(start), 1) end
local calls, failures = 0, 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local b = tonumber(all[i])
  if b > now - window then
    calls = calls + tonumber(all[i + 1])
    failures = failures + tonumber(redis.call('HGET', KEYS[3], all[i]) or '0')
  elseif b <= now - window - bucket then
    redis.call('HDEL', KEYS[2], all[i])
    redis.call('HDEL', KEYS[3], all[i])
  end
end
return {calls, failures, consecutive}
"""
_B_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state ~= ARGV[1] then return 0 end
if ARGV[5] ~= '' and (redis.call('HGET', KEYS[1], 'opened_at') or '0') ~= ARGV[5] then return 0 end
local new, now, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'state', new, 'half_open_successes', 0)
if new == 'open' then
  redis.call('HSET', KEYS[1], 'opened_at', now, 'probe_until', 0)
elseif new == 'half-open' then
  redis.call('HSET', KEYS[1], 'probe_until', string.format('%.6f', tonumber(now) + lease))
else
  redis.call('HSET', KEYS[1], 'probe_until', 0, 'consecutive_failures', 0)
  redis.call('DEL', KEYS[2], KEYS[3])
end
return 1
"""
_B_PROBE = """
if (redis.call('HGET', KEYS[1], 'state') or 'closed') ~= 'half-open' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0') > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'probe_until', string.format('%.6f', tonumber(ARGV[1]) + tonumber(ARGV[2])))
return 1
"""
_B_PROBE_OK = """
if (redis.call('HGET', KEYS[1], 'state') or 'closed') ~= 'half-open' then return 0 end
redis.call('HSET', KEYS[1], 'probe_until', 0)
return redis.call('HINCRBY', KEYS[1], 'half_open_successes', 1)
"""


class RedisBreakerStore:
    """
    Breaker state in Redis (the ``breaker_store`` connection); each operation is one Lua script.

    :param client: a redis client
    :param prefix: key prefix
    """

    def __init__(self, client: redis.Redis, prefix: str = "resilient_etl:breaker:") -> None:
        self.client = client
        self.prefix = prefix
        self._read = client.register_script(_B_READ)
        self._record = client.register_script(_B_RECORD)
        self._transition = client.register_script(_B_TRANSITION)
        self._probe = client.register_script(_B_PROBE)
        self._probe_ok = client.register_script(_B_PROBE_OK)

    def _keys(self, name: str) -> list[str]:
        base = self.prefix + name
        return [base, base + ":calls", base + ":failures"]

    def read(self, name: str) -> BreakerSnapshot:
        state, opened_at, probe_until, consecutive, successes = self._read(keys=self._keys(name)[:1])
        return BreakerSnapshot(
            state.decode() if isinstance(state, bytes) else state, float(opened_at), float(probe_until), int(consecutive), int(successes)
        )

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        calls, failures, consecutive = self._record(
            keys=self._keys(name), args=[repr(now), repr(window), repr(bucket), str(successes), "1" if failed else "0"]
        )
        return WindowCounts(int(calls), int(failures), int(consecutive))

    def transition(self, name: str, *, expected: str, new: str, now: float, lease: float = 0.0,
                   opened_at: float | None = None) -> bool:
        expected_opened = "" if opened_at is None else self._fmt(opened_at)
        return bool(self._transition(keys=self._keys(name), args=[expected, new, self._fmt(now), repr(lease), expected_opened]))

    def acquire_probe(self, name: str, *, now: float, lease: float) -> bool:
        return bool(self._probe(keys=self._keys(name)[:1], args=[repr(now), repr(lease)]))

    def probe_succeeded(self, name: str) -> int:
        return int(self._probe_ok(keys=self._keys(name)[:1]))

    @staticmethod
    def _fmt(value: float) -> str:
        # opened_at is compared as a string in the CAS: always write and compare one format
        return f"{value:.6f}"


def breaker_store(kind: str, *, warehouse: WarehouseHook, redis_conn_id: str) -> BreakerStore:
    """Return the configured shared breaker store (the same choice as :func:`pacing_store`)."""
    if not uses_redis(kind, redis_conn_id):
        return SqlBreakerStore(warehouse)
    return _Degrading(RedisBreakerStore(redis_client(redis_conn_id)), lambda: SqlBreakerStore(warehouse), what=f"redis {redis_conn_id}")  # type: ignore[return-value]


class _Degrading:
    """
    A store that uses Redis and, once Redis fails to answer, the warehouse tables for good (this process).

    pybreaker's ``CircuitRedisStorage`` falls back to a declared state when Redis fails; here the
    declared fallback is the SQL store every worker can also reach, so breakers keep working as
    shared breakers and pacing stays shared (ADR 0004, runbook ``shared-state-unavailable``).

    :param primary: the Redis store
    :param fallback: builds the SQL store on first need
    :param what: names the store in the warning
    """

    def __init__(self, primary: Any, fallback: Callable[[], Any], *, what: str) -> None:
        self.primary = primary
        self._fallback = fallback
        self.what = what
        self.degraded: Any = None

    @property
    def description(self) -> str:
        """Name the store in use: the Redis one, or the warehouse one it fell back to."""
        if self.degraded is not None:
            return f"{type(self.degraded).__name__} (fell back: {self.what} unavailable)"
        return f"{type(self.primary).__name__} (falls back to the warehouse when {self.what} is unavailable)"

    def __getattr__(self, name: str) -> Any:
        if self.degraded is not None:
            return getattr(self.degraded, name)
        method = getattr(self.primary, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            import redis

            if self.degraded is not None:
                return getattr(self.degraded, name)(*args, **kwargs)
            try:
                return method(*args, **kwargs)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("Shared-state store %s unavailable (%s): falling back to the warehouse tables for this process",
                            self.what, type(exc).__name__)
                self.degraded = self._fallback()
                return getattr(self.degraded, name)(*args, **kwargs)

        return call
