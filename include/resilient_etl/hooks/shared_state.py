"""
The one place that wires shared stores and breakers from Airflow connections and the configuration.

Operators, hooks, the health check and the CLI all ask here: which store (Redis when the
``breaker_store`` connection exists, else the warehouse tables), what happens when Redis stops
answering (the warehouse tables, see :class:`~resilient_etl.resilience.stores.fallback.FallbackStore`),
and the circuit breaker of an API with its state changes recorded in ``breaker_events``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pybreaker
from sqlalchemy import insert

from resilient_etl.hooks.connections import connection_exists, redis_client
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import breaker_events
from resilient_etl.resilience.stores.base import SharedStore, WindowCounts
from resilient_etl.resilience.stores.fallback import FallbackStore
from resilient_etl.resilience.stores.memory import MemoryStore
from resilient_etl.resilience.stores.sql import SqlStore

if TYPE_CHECKING:
    from resilient_etl.config.models import BreakerPolicy, ResilienceConfig
    from resilient_etl.resilience.breaker import SharedCircuitBreaker
    from resilient_etl.resilience.budget import RetryBudget

log = logging.getLogger(__name__)


def uses_redis(kind: str, redis_conn_id: str) -> bool:
    """Return whether shared state goes to Redis: ``redis``, or ``auto`` when the connection exists."""
    return kind == "redis" or (kind == "auto" and connection_exists(redis_conn_id))


def shared_store(kind: str, *, warehouse: WarehouseHook, redis_conn_id: str) -> SharedStore:
    """
    Return the shared store for breakers and pacing.

    :param kind: ``redis``, ``sql`` or ``auto`` (Redis when ``redis_conn_id`` exists, else SQL)
    :param warehouse: the warehouse (its tables are the SQL store, and Redis's fallback)
    :param redis_conn_id: the Redis connection id
    """

    def sql() -> SharedStore:
        return SqlStore(warehouse.engine, retry_policy=warehouse.retry_policy)

    if not uses_redis(kind, redis_conn_id):
        return sql()
    import redis

    from resilient_etl.resilience.stores.redis import RedisStore

    return FallbackStore(
        RedisStore(redis_client(redis_conn_id)),
        sql,
        unavailable=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
        what=f"redis {redis_conn_id}",
    )


def configured_store(cfg: ResilienceConfig, warehouse: WarehouseHook | None = None) -> SharedStore:
    """Return the shared store the configuration asks for (``shared_state``)."""
    warehouse = warehouse or WarehouseHook(cfg.warehouse.conn_id, retry_policy=cfg.retry.policy("database"))
    return shared_store(cfg.shared_state.store, warehouse=warehouse, redis_conn_id=cfg.shared_state.redis_conn_id)


class BreakerEventRecorder(pybreaker.CircuitBreakerListener):
    """
    Write every state change to the warehouse table ``breaker_events`` (created on first use).

    A change that cannot be recorded is logged and the call goes on: the breaker's job is the call.
    """

    def __init__(self, warehouse: WarehouseHook) -> None:
        self.warehouse = warehouse
        self._table_ready = False

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        try:
            self.record(
                cb.name, old_state.name if old_state else "unknown", new_state.name, getattr(cb, "last_reason", ""), getattr(cb, "last_counts", None)
            )
        except Exception as exc:  # boundary: a listener must not turn the guarded call into a failure
            log.error(
                "Circuit breaker %s: %s -> %s not recorded in breaker_events (%s: %s)",
                cb.name,
                old_state.name if old_state else "unknown",
                new_state.name,
                type(exc).__name__,
                exc,
            )

    def record(self, name: str, old: str, new: str, reason: str, counts: WindowCounts | None = None) -> None:
        """Write one state change (also a manual one, with who and why in ``reason``)."""
        with self.warehouse.begin() as conn:
            if not self._table_ready:
                breaker_events.create(conn, checkfirst=True)
                self._table_ready = True
            conn.execute(
                insert(breaker_events).values(
                    name=name,
                    from_state=old,
                    to_state=new,
                    reason=reason,
                    calls=counts.calls if counts else None,
                    failures=counts.failures if counts else None,
                    consecutive_failures=counts.consecutive_failures if counts else None,
                    at=dt.datetime.now(dt.UTC),
                )
            )


def api_breaker(
    service: str,
    *,
    cfg: ResilienceConfig | None = None,
    warehouse: WarehouseHook | None = None,
    store: SharedStore | None = None,
    policy: Callable[[BreakerPolicy], BreakerPolicy] | None = None,
) -> SharedCircuitBreaker:
    """
    Return the shared circuit breaker of an API, as configured (``breakers.<service>``, ``shared_state``).

    :param service: the API: ``postcodes_io`` or ``companies_house``
    :param cfg: the configuration (default: the one in force)
    :param warehouse: where events (and, without Redis, the state) are kept (default: the configured one)
    :param store: the shared store (default: :func:`configured_store`)
    :param policy: adjusts the configured policy (a connection's ``extra.breaker`` fields)
    """
    from resilient_etl.config.loader import get_config
    from resilient_etl.resilience.breaker import SharedCircuitBreaker

    cfg = cfg or get_config()
    configured = cfg.breakers.policy(service)  # type: ignore[arg-type]  # an unknown API fails here, by name
    chosen = policy(configured) if policy is not None else configured
    if store is None and warehouse is None and not _shared_store_defined(cfg):
        # A hook used where neither Redis nor the warehouse is set up still gets a breaker, in this process only.
        log.warning(
            "Circuit breaker %s: neither connection %s nor %s exists; its state is kept in this process only",
            service,
            cfg.shared_state.redis_conn_id,
            cfg.warehouse.conn_id,
        )
        return SharedCircuitBreaker(chosen, MemoryStore())
    warehouse = warehouse or WarehouseHook(cfg.warehouse.conn_id, retry_policy=cfg.retry.policy("database"))
    store = store or configured_store(cfg, warehouse)
    return SharedCircuitBreaker(chosen, store, listeners=[BreakerEventRecorder(warehouse)])


def api_retry_budget(service: str, *, cfg: ResilienceConfig | None = None, store: SharedStore | None = None) -> RetryBudget | None:
    """
    Return the retry budget of an API as configured (``retry_budget.<service>``), or None when disabled.

    :param service: the API: ``postcodes_io`` or ``companies_house``
    :param cfg: the configuration (default: the one in force)
    :param store: the shared store (default: the configured one; this process only when none is set up)
    """
    from resilient_etl.config.loader import get_config
    from resilient_etl.resilience.budget import RetryBudget

    cfg = cfg or get_config()
    if not cfg.retry_budget.enabled:
        return None
    policy = cfg.retry_budget.policy(service)  # type: ignore[arg-type]  # an unknown API fails here, by name
    if store is None:
        store = configured_store(cfg) if _shared_store_defined(cfg) else MemoryStore()
    return RetryBudget(store, service, policy)


def _shared_store_defined(cfg: ResilienceConfig) -> bool:
    kind = cfg.shared_state.store
    return uses_redis(kind, cfg.shared_state.redis_conn_id) or (kind != "redis" and connection_exists(cfg.warehouse.conn_id))
