"""
Shared state in warehouse tables (``shared_pacing``, ``breaker_state``, ``breaker_buckets``).

Works on SQLite, PostgreSQL and SQL Server: a pacing claim is one ``UPDATE … RETURNING``, every
breaker compare-and-set one conditional UPDATE. The store takes an Engine and owns its three tables
(the warehouse schema copies them, so one ``create_all`` makes everything).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from resilient_etl.config.models import RetryPolicy
from resilient_etl.exceptions import WarehouseUnavailableError
from resilient_etl.resilience.retry import Retrier
from resilient_etl.resilience.stores.base import CLOSED, FRESH, HALF_OPEN, OPEN, BreakerSnapshot, WindowCounts, bucket_start

log = logging.getLogger(__name__)
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


def connect(engine: Engine, policy: RetryPolicy, *, what: str, logger: Any = None) -> Connection:
    """
    Open a connection, retrying with backoff while the server is down or restarting.

    :param engine: the database
    :param policy: how connecting is retried
    :param what: names the database in the error
    :raises WarehouseUnavailableError: still unreachable when the retry budget is spent
    """

    def once() -> Connection:
        try:
            return engine.connect()
        except OperationalError as exc:
            raise WarehouseUnavailableError(f"{what} unreachable: {exc.orig}") from exc

    return Retrier(policy, logger=logger).call(once)


class SqlStore:
    """
    Pacing slots and breaker state in the three tables above.

    :param engine: the database holding them (the warehouse's engine)
    :param retry_policy: how opening a connection is retried (default: the ``database`` defaults)
    """

    def __init__(self, engine: Engine, *, retry_policy: RetryPolicy | None = None) -> None:
        self.engine = engine
        self.retry_policy = retry_policy or RetryPolicy(dependency="database")

    @property
    def description(self) -> str:
        """Name the store for a log line."""
        return f"SqlStore ({self.engine.dialect.name})"

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """Open one connection in a transaction: commit on success, roll back on any error."""
        conn = connect(self.engine, self.retry_policy, what="shared-state tables", logger=log)
        with conn, conn.begin():
            yield conn

    def claim(self, key: str, *, interval: float, now: float) -> float:
        t = shared_pacing
        stamp = dt.datetime.now(dt.UTC)
        later = case((t.c.next_slot_at > now, t.c.next_slot_at), else_=now)
        for _ in range(3):
            with self.begin() as conn:
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
        with self.begin() as conn:
            conn.execute(
                update(t)
                .where(t.c.pacing_key == key)
                .values(next_slot_at=case((t.c.next_slot_at > until, t.c.next_slot_at), else_=until), updated_at=dt.datetime.now(dt.UTC))
            )


    def _ensure(self, conn: Any, name: str) -> None:
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
        t = breaker_state
        with self.begin() as conn:
            row = conn.execute(
                select(t.c.state, t.c.opened_at, t.c.probe_until, t.c.consecutive_failures, t.c.half_open_successes).where(t.c.name == name)
            ).first()
        return BreakerSnapshot(*row) if row else FRESH

    def record(self, name: str, *, successes: int, failed: bool, now: float, window: float, bucket: float) -> WindowCounts:
        t, b = breaker_state, breaker_buckets
        start = bucket_start(now, bucket)
        calls, failures = successes + int(failed), int(failed)
        base = 0 if successes else t.c.consecutive_failures
        with self.begin() as conn:
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
        t = breaker_state
        values: dict[str, Any] = {"state": new, "updated_at": dt.datetime.now(dt.UTC)}
        if new == OPEN:
            values.update(opened_at=now, probe_until=0.0, half_open_successes=0)
        elif new == HALF_OPEN:
            values.update(probe_until=now + lease, half_open_successes=0)
        else:
            values.update(probe_until=0.0, half_open_successes=0, consecutive_failures=0)
        with self.begin() as conn:
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
        with self.begin() as conn:
            return conn.execute(
                update(t).where(t.c.name == name, t.c.state == HALF_OPEN, t.c.probe_until <= now).values(probe_until=now + lease)
            ).rowcount == 1

    def probe_succeeded(self, name: str) -> int:
        t = breaker_state
        with self.begin() as conn:
            row = conn.execute(
                update(t)
                .where(t.c.name == name, t.c.state == HALF_OPEN)
                .values(half_open_successes=t.c.half_open_successes + 1, probe_until=0.0)
                .returning(t.c.half_open_successes)
            ).first()
        return int(row[0]) if row else 0
