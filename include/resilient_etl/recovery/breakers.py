"""Force a circuit breaker open (maintenance, a known outage) or closed (the API is known to be back), recorded."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from resilient_etl.config.models import ResilienceConfig
from resilient_etl.exceptions import utc_clock
from resilient_etl.hooks.shared_state import BreakerEventRecorder, configured_store
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.pipeline import overrides
from resilient_etl.resilience.breaker import force_state
from resilient_etl.resilience.stores.base import CLOSED, OPEN

log = logging.getLogger("resilient_etl.resilience.breaker")
BREAKERS = ("postcodes_io", "companies_house")


@dataclass(frozen=True)
class ForcedChange:
    """A forced breaker change: from, to, the reason as recorded, when, and its override."""

    name: str
    old: str
    new: str
    reason: str
    at: dt.datetime
    override: overrides.Override


def force_breaker(
    cfg: ResilienceConfig,
    warehouse: WarehouseHook,
    name: str,
    *,
    open_minutes: float | None,
    why: str = "",
    by: str | None = None,
    reverses: int | None = None,
) -> ForcedChange:
    """
    Force breaker ``name`` open for ``open_minutes`` (or closed when None), in the shared store every worker reads.

    Recorded twice on purpose: in ``breaker_events`` (the breaker's history, with the dashboards) and in
    ``manual_overrides`` (who did it and why, undoable).

    :raises KeyError: no such breaker
    """
    if name not in BREAKERS:
        raise KeyError(f"no breaker {name!r} (breakers: {', '.join(BREAKERS)})")
    store = configured_store(cfg, warehouse)
    now = time.time()
    new = OPEN if open_minutes is not None else CLOSED
    hold = (open_minutes or 0.0) * 60
    old = force_state(store, cfg.breakers.policy(name), new, now=now, hold_seconds=hold)
    who = overrides.current_user(by)
    verb = "open" if new == OPEN else "reset"
    reason = f"manual {verb} by {who}" + (f" until {utc_clock(now + hold)}" if new == OPEN else "") + (f": {why}" if why else "")
    BreakerEventRecorder(warehouse).record(name, old, new, reason)
    log.warning("Circuit breaker %s: %s -> %s (%s)", name, old, new, reason)
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    with warehouse.begin() as conn:
        record = overrides.record(
            conn,
            f"breaker-{verb}",
            name,
            reason=why,
            by=who,
            now=at,
            until=at + dt.timedelta(seconds=hold) if new == OPEN else None,
            reverses=reverses,
            details={"from": old, "to": new},
        )
    return ForcedChange(name, old, new, reason, at, record)
