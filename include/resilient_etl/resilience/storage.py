"""
State shared by every worker process: each Airflow task try is a new process, so anything that must
be coordinated (quota pacing now, breaker state later) lives in Redis (the ``breaker_store``
connection) or, by default, in a warehouse table.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import case, insert, update
from sqlalchemy.exc import IntegrityError

from resilient_etl.schema import shared_pacing

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


def connection_exists(conn_id: str) -> bool:
    """Return whether an Airflow connection ``conn_id`` is defined (env, secrets backend or DB)."""
    from airflow.sdk.bases.hook import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def pacing_store(kind: str, *, warehouse: WarehouseHook, redis_conn_id: str) -> PacingStore:
    """
    Return the configured shared pacing store.

    :param kind: ``redis``, ``sql`` or ``auto`` (Redis when ``redis_conn_id`` exists, else SQL)
    :param warehouse: the warehouse hook (for the SQL store)
    :param redis_conn_id: the Redis connection id
    """
    if kind == "redis" or (kind == "auto" and connection_exists(redis_conn_id)):
        return RedisPacingStore(redis_client(redis_conn_id))
    return SqlPacingStore(warehouse)
