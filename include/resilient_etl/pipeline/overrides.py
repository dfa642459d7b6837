"""
Manual overrides: what a person changed by hand, recorded in ``manual_overrides`` (who, when, why), and
the one the pipeline itself obeys: live enrichment suspended for a declared outage.

Every override is a row; undoing one is another row naming it in ``reverses``, so the table is the
audit trail and the current state at once (the latest suspend/resume row of a target decides).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, desc, insert, select

from resilient_etl.hooks.warehouse.schema import as_utc, manual_overrides

log = logging.getLogger(__name__)
NO_REASON = "(no reason given)"  # what an override records when the person gave no reason

SUSPEND_ENRICHMENT, RESUME_ENRICHMENT = "enrichment-suspend", "enrichment-resume"
ENRICHMENT_TARGET = "live-enrichment"
BY_ENV = "RESILIENT_ETL_USER"  # who an override is recorded for when --by is not given (else the login name)


def current_user(by: str | None = None) -> str:
    """Return who is making an override: ``by``, else ``$RESILIENT_ETL_USER``, else the login name."""
    return by or os.environ.get(BY_ENV) or getpass.getuser()


@dataclass(frozen=True)
class Override:
    """One recorded override (a row of ``manual_overrides``)."""

    id: int
    action: str
    target: str
    by_user: str
    reason: str
    at: dt.datetime
    until: dt.datetime | None
    reverses: int | None
    details: dict[str, Any]

    def as_row(self) -> dict[str, Any]:
        """Return the override as a flat mapping for ``-o`` output."""
        return {
            "id": self.id,
            "action": self.action,
            "target": self.target,
            "by": self.by_user,
            "at": self.at.isoformat(timespec="seconds"),
            "until": self.until.isoformat(timespec="seconds") if self.until else "",
            "reverses": self.reverses or "",
            "reason": self.reason,
        }


def _override(row: Any) -> Override:
    return Override(
        id=row.id,
        action=row.action,
        target=row.target,
        by_user=row.by_user,
        reason=row.reason,
        at=as_utc(row.at),
        until=as_utc(row.until) if row.until else None,
        reverses=row.reverses,
        details=json.loads(row.details),
    )


def record(
    conn: Connection,
    action: str,
    target: str,
    *,
    reason: str,
    by: str | None = None,
    until: dt.datetime | None = None,
    reverses: int | None = None,
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> Override:
    """
    Record an override in ``manual_overrides`` and log it; return the row.

    :param conn: a warehouse connection in a transaction (the override commits with what it changed)
    :param action: what was done (``pipeline-pause``, ``breaker-open``, ``quarantine-replay`` …)
    :param target: what it was done to (a DAG id, a breaker, a run id, a file)
    :param reason: why, as the person gave it
    :param by: who (default :func:`current_user`)
    :param until: when the override lapses by itself, if it does
    :param reverses: the id of the override this one undoes
    :param details: what else to keep (JSON; counts, file names; never secrets)
    :param now: the time to record (default: now)
    """
    at = now or dt.datetime.now(dt.UTC)
    values = {
        "action": action,
        "target": target,
        "by_user": current_user(by),
        "reason": reason or NO_REASON,
        "at": at,
        "until": until,
        "reverses": reverses,
        "details": json.dumps(details or {}, sort_keys=True, default=str),
    }
    new_id = conn.execute(insert(manual_overrides).values(**values)).inserted_primary_key[0]
    log.warning("Manual override #%s: %s %s by %s: %s", new_id, action, target, values["by_user"], values["reason"])
    return Override(id=new_id, **{**values, "details": details or {}})


def history(conn: Connection, *, action: str | None = None, target: str | None = None, limit: int = 100) -> list[Override]:
    """Return the latest overrides, newest first, optionally of one action and target."""
    o = manual_overrides.c
    query = select(manual_overrides).order_by(desc(o.at), desc(o.id)).limit(limit)
    if action:
        query = query.where(o.action == action)
    if target:
        query = query.where(o.target == target)
    return [_override(r) for r in conn.execute(query)]


def get(conn: Connection, override_id: int) -> Override | None:
    """Return override ``override_id``, or None."""
    row = conn.execute(select(manual_overrides).where(manual_overrides.c.id == override_id)).first()
    return _override(row) if row is not None else None


def undone_by(conn: Connection, override_id: int) -> int | None:
    """Return the id of the override that reversed ``override_id``, if one did."""
    return conn.execute(select(manual_overrides.c.id).where(manual_overrides.c.reverses == override_id)).scalars().first()


def latest(conn: Connection, actions: tuple[str, ...], target: str) -> Override | None:
    """Return the newest override of ``target`` among ``actions``, if any."""
    o = manual_overrides.c
    row = conn.execute(select(manual_overrides).where(o.action.in_(actions), o.target == target).order_by(desc(o.at), desc(o.id)).limit(1)).first()
    return _override(row) if row is not None else None


def enrichment_suspension(conn: Connection, *, now: dt.datetime | None = None) -> Override | None:
    """Return the override suspending live enrichment now in force, or None (enrichment is live)."""
    last = latest(conn, (SUSPEND_ENRICHMENT, RESUME_ENRICHMENT), ENRICHMENT_TARGET)
    if last is None or last.action != SUSPEND_ENRICHMENT:
        return None
    if last.until is not None and last.until <= (now or dt.datetime.now(dt.UTC)):
        return None
    return last
