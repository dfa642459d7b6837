"""
Shared state in warehouse tables (``shared_pacing``, ``breaker_state``, ``breaker_buckets``).

Works on SQLite, PostgreSQL and SQL Server: a pacing claim is one ``UPDATE … RETURNING``, every
breaker compare-and-set one conditional UPDATE. The store takes an Engine and owns its three tables
(the warehouse schema copies them, so one ``create_all`` makes everything).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, DateTime, Engine, Float, Integer, MetaData, String, Table, case, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from resilient_etl.classification.database import db_error
from resilient_etl.config.models import RetryPolicy
from resilient_etl.resilience.retry import Retrier
from resilient_etl.resilience.stores.base import CLOSED, FRESH, HALF_OPEN, OPEN, BreakerSnapshot, WindowCounts, bucket_start

log = logging.getLogger(__name__)
T = TypeVar("T")
metadata = MetaData()

# Quota pacing shared by every worker that uses the same API key (the key itself is never stored:
# ``pacing_key`` is a hash of it).
shared_pacing = Table(
    "shared_pacing",
    metadata,
    Column("pacing_key", String(100), primary_key=True),
    Column("next_slot_at", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Circuit breaker state shared by every worker (Redis keeps the same fields in a hash).
breaker_state = Table(
    "breaker_state",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("state", String(10), nullable=False),  # closed | open | half-open
    Column("opened_at", Float, nullable=False),
    Column("probe_until", Float, nullable=False),  # a half-open probe holds this lease
    Column("consecutive_failures", Integer, nullable=False),
    Column("half_open_successes", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The failure-rate window: call and failure counts per time bucket.
breaker_buckets = Table(
    "breaker_buckets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("bucket_start", Integer, primary_key=True),
    Column("calls", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
)


class SqlStore:
    """
    Pacing slots and breaker state in the three tables above.

    :param engine: the database holding them (the warehouse's engine)
    :param retry_policy: how an operation that could not reach the database, or lost a lock conflict
        (SQLite ``database is locked``, a deadlock victim), is retried (default: the ``database`` defaults)
    """

    def __init__(self, engine: Engine, *, retry_policy: RetryPolicy | None = None) -> None:
        self.engine = engine
        self.retry_policy = retry_policy or RetryPolicy(dependency="database")
        self._tables_ready = False

    @property
    def description(self) -> str:
        """Name the store for a log line."""
        return f"SqlStore ({self.engine.dialect.name})"

    def _transact(self, body: Callable[[Connection], T]) -> T:
        """
        Run ``body`` in one transaction, retried whole under the policy when it fails transiently.

        The tables are created on first use (a fresh warehouse has none), so a hook used on its own
        works without a pipeline run having created the schema first.
        """

        def once() -> T:
            try:
                with self.engine.connect() as conn, conn.begin():
                    if not self._tables_ready:
                        metadata.create_all(conn, checkfirst=True)
                    result = body(conn)
            except DBAPIError as exc:
                raise db_error(exc) from exc
            self._tables_ready = True
            return result

        return Retrier(self.retry_policy, logger=log).call(once)

    def claim(self, key: str, *, interval: float, now: float) -> float:
        t = shared_pacing
        stamp = dt.datetime.now(dt.UTC)
        later = case((t.c.next_slot_at > now, t.c.next_slot_at), else_=now)

        def body(conn: Connection) -> float | None:
            row = conn.execute(
                update(t).where(t.c.pacing_key == key).values(next_slot_at=later + interval, updated_at=stamp).returning(t.c.next_slot_at)
            ).first()
            if row is not None:
                return float(row[0]) - interval
            try:
                with conn.begin_nested():
                    conn.execute(insert(t).values(pacing_key=key, next_slot_at=now + interval, updated_at=stamp))
            except IntegrityError:
                return None  # another process created the row first: claim again
            return now

        for _ in range(3):
            slot = self._transact(body)
            if slot is not None:
                return slot
        raise RuntimeError(f"could not claim a pacing slot for {key}")

    def defer(self, key: str, *, until: float) -> None:
        t = shared_pacing
        statement = (
            update(t)
            .where(t.c.pacing_key == key)
            .values(next_slot_at=case((t.c.next_slot_at > until, t.c.next_slot_at), else_=until), updated_at=dt.datetime.now(dt.UTC))
        )
        self._transact(lambda conn: conn.execute(statement))

    def _ensure(self, conn: Connection, name: str) -> None:
        t = breaker_state
        if conn.execute(select(t.c.name).where(t.c.name == name)).first() is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(t).values(
                            name=name,
                            state=CLOSED,
                            opened_at=0.0,
                            probe_until=0.0,
                            consecutive_failures=0,
                            half_open_successes=0,
                            updated_at=dt.datetime.now(dt.UTC),
                        )
                    )
            except IntegrityError:
                pass  # created concurrently

    def read(self, name: str) -> BreakerSnapshot:
        t = breaker_state
        query = select(t.c.state, t.c.opened_at, t.c.probe_until, t.c.consecutive_failures, t.c.half_open_successes).where(t.c.name == name)
        row = self._transact(lambda conn: conn.execute(query).first())
        return BreakerSnapshot(*row) if row else FRESH

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        t, b = breaker_state, breaker_buckets
        start = bucket_start(now, bucket)
        calls, failures = successes + int(failed), int(failed)
        base = 0 if successes else t.c.consecutive_failures

        def body(conn: Connection) -> WindowCounts:
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
            in_window, failed_in_window = conn.execute(
                select(func.coalesce(func.sum(b.c.calls), 0), func.coalesce(func.sum(b.c.failures), 0)).where(
                    b.c.name == name, b.c.bucket_start > now - window
                )
            ).one()
            return WindowCounts(int(in_window), int(failed_in_window), int(consecutive))

        return self._transact(body)

    def transition(self, name: str, *, expected: str, new: str, now: float, lease: float = 0.0, opened_at: float | None = None) -> bool:
        t = breaker_state
        values: dict[str, Any] = {"state": new, "updated_at": dt.datetime.now(dt.UTC)}
        if new == OPEN:
            values.update(opened_at=now, probe_until=0.0, half_open_successes=0)
        elif new == HALF_OPEN:
            values.update(probe_until=now + lease, half_open_successes=0)
        else:
            values.update(probe_until=0.0, half_open_successes=0, consecutive_failures=0)
        cond = (t.c.name == name) & (t.c.state == expected)
        if opened_at is not None:
            cond &= t.c.opened_at == opened_at

        def body(conn: Connection) -> bool:
            self._ensure(conn, name)
            won = bool(conn.execute(update(t).where(cond).values(**values)).rowcount == 1)
            if won and new == CLOSED:
                conn.execute(delete(breaker_buckets).where(breaker_buckets.c.name == name))
            return won

        return self._transact(body)

    def acquire_probe(self, name: str, *, now: float, lease: float) -> bool:
        t = breaker_state
        statement = update(t).where(t.c.name == name, t.c.state == HALF_OPEN, t.c.probe_until <= now).values(probe_until=now + lease)
        return self._transact(lambda conn: conn.execute(statement).rowcount == 1)

    def probe_succeeded(self, name: str) -> int:
        t = breaker_state
        statement = (
            update(t)
            .where(t.c.name == name, t.c.state == HALF_OPEN)
            .values(half_open_successes=t.c.half_open_successes + 1, probe_until=0.0)
            .returning(t.c.half_open_successes)
        )
        row = self._transact(lambda conn: conn.execute(statement).first())
        return int(row[0]) if row else 0
