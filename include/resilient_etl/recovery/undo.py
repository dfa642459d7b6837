"""
Undo a manual override: each reversible action knows its reverse, which is recorded as a new override
naming the one it undoes. What cannot be undone says why and what to do instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select, update

from resilient_etl.config.models import ResilienceConfig
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import quarantine
from resilient_etl.pipeline import overrides
from resilient_etl.pipeline.files import REASON_SUFFIX


class UndoRefused(Exception):
    """The override cannot be undone (not found, already undone, or its effect has moved on)."""


def _find(warehouse: WarehouseHook, override_id: int) -> overrides.Override:
    with warehouse.begin() as conn:
        found = overrides.get(conn, override_id)
        reversed_by = overrides.undone_by(conn, override_id)
    if found is None:
        raise UndoRefused(f"no override #{override_id} (see `resilient-etl overrides list`)")
    if reversed_by is not None:
        raise UndoRefused(f"override #{override_id} was undone already, by #{reversed_by}")
    return found


def undo(cfg: ResilienceConfig, warehouse: WarehouseHook, override_id: int, *, why: str, by: str | None = None) -> overrides.Override:
    """
    Reverse override ``override_id``; return the override recording the reversal.

    :raises UndoRefused: not found, already undone, or no longer reversible (the message says what to do)
    """
    target = _find(warehouse, override_id)
    action = target.action
    if action in ("pipeline-pause", "pipeline-resume"):
        from resilient_etl.recovery.airflow_api import AirflowApi

        pause = action == "pipeline-resume"
        before = AirflowApi(cfg.recovery.airflow_api_conn_id).set_paused(target.target, pause)
        return _record(warehouse, "pipeline-pause" if pause else "pipeline-resume", target, why, by, {"was_paused": before})
    if action == overrides.SUSPEND_ENRICHMENT:
        with warehouse.begin() as conn:
            current = overrides.enrichment_suspension(conn)
        if current is None or current.id != target.id:
            raise UndoRefused(f"override #{target.id} is no longer in force (it lapsed or another replaced it)")
        return _record(warehouse, overrides.RESUME_ENRICHMENT, target, why, by, {})
    if action == "breaker-open":
        from resilient_etl.recovery.breakers import force_breaker

        return force_breaker(cfg, warehouse, target.target, open_minutes=None, why=why or f"undo #{target.id}", by=by, reverses=target.id).override
    if action == "quarantine-replay":
        return _withdraw_replay(cfg, warehouse, target, why, by)
    if action == "rejected-requeue":
        return _withdraw_requeue(cfg, warehouse, target, why, by)
    hints = {
        "breaker-reset": "open it again with `resilient-etl breakers open NAME`",
        overrides.RESUME_ENRICHMENT: "suspend it again with `resilient-etl pipeline suspend-enrichment`",
        "incident-resolve": "a new occurrence of the failure opens a new incident",
        "incident-ack": "acknowledging only stops escalation; resolve the incident when it is fixed",
        "restore": "a restore is undone by restoring another set into an empty warehouse",
        "pipeline-trigger": "mark the run failed or delete it in the Airflow UI",
    }
    raise UndoRefused(f"override #{target.id} ({action}) cannot be undone: {hints.get(action, 'no reverse is defined')}")


def _record(
    warehouse: WarehouseHook, action: str, target: overrides.Override, why: str, by: str | None, details: dict[str, object]
) -> overrides.Override:
    with warehouse.begin() as conn:
        return overrides.record(conn, action, target.target, reason=why or f"undo #{target.id}", by=by, reverses=target.id, details=details)


def _withdraw_replay(cfg: ResilienceConfig, warehouse: WarehouseHook, target: overrides.Override, why: str, by: str | None) -> overrides.Override:
    name = str(target.details["file"])
    path = cfg.paths.landing / name
    if not path.exists():
        raise UndoRefused(f"replay file {name} is no longer in landing: a run took it (its rows are in that run's reconciliation)")
    with warehouse.begin() as conn:
        q = quarantine.c
        rows = conn.execute(select(func.count()).select_from(quarantine).where(q.replay_file == name)).scalar_one()
        conn.execute(update(quarantine).where(q.replay_file == name).values(replayed_at=None, replay_file=None))
        record = overrides.record(
            conn,
            "quarantine-replay-withdrawn",
            target.target,
            reason=why or f"undo #{target.id}",
            by=by,
            reverses=target.id,
            details={"file": name, "rows": rows},
        )
        path.unlink()  # inside the transaction: if the unlink fails, the rows stay marked as replayed
    return record


def _withdraw_requeue(cfg: ResilienceConfig, warehouse: WarehouseHook, target: overrides.Override, why: str, by: str | None) -> overrides.Override:
    path = Path(str(target.details["to"]))
    if not path.exists():
        raise UndoRefused(f"{path.name} is no longer in landing: a run took it")
    back = cfg.paths.rejected / path.name
    if back.exists():
        raise UndoRefused(f"{back} exists: another file of that name was rejected since")
    with warehouse.begin() as conn:
        record = overrides.record(
            conn,
            "rejected-requeue-withdrawn",
            target.target,
            reason=why or f"undo #{target.id}",
            by=by,
            reverses=target.id,
            details={"file": path.name},
        )
        shutil.move(str(path), back)
        back.with_name(back.name + REASON_SUFFIX).write_text(str(target.details.get("rejected_because", "")) + "\n", encoding="utf-8")
    return record
