"""
Checkpoints that survive a retry or a clear (XCom does not: Airflow 3.3 wipes it at every try).

* Load progress is a row in ``etl_checkpoints`` per committed chunk, written in the same
  transaction as the chunk's data: exactly once, never ahead of or behind the data.
* Progress outside a database transaction (API enrichment) is also mirrored in the task instance's
  ``task_state_store`` (Airflow 3.3, AIP-103), readable in the UI/REST while the task runs and on
  the next try. A clear does not reset that store, so ``full_refresh`` clears it explicitly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from resilient_etl.hooks.warehouse.schema import etl_checkpoints

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse import WarehouseHook

log = logging.getLogger(__name__)


def committed_chunks(warehouse: WarehouseHook, *, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> tuple[int, int]:
    """Return (chunks, rows) a task has committed for a run."""
    c = etl_checkpoints.c
    with warehouse.begin() as conn:
        chunks, rows = conn.execute(
            select(func.count(), func.coalesce(func.sum(c.rows), 0)).where(
                c.dag_id == dag_id, c.run_id == run_id, c.task_id == task_id, c.map_index == map_index
            )
        ).one()
    return int(chunks), int(rows)


def discard_checkpoints(conn: Any, *, run_id: str, source_file: str | None = None) -> None:
    """Delete a run's load checkpoints (of one file, or all), inside the caller's transaction."""
    cond = etl_checkpoints.c.run_id == run_id
    if source_file is not None:
        cond &= etl_checkpoints.c.source_file == source_file
    conn.execute(delete(etl_checkpoints).where(cond))


class TaskProgress:
    """
    A progress marker in the task's ``task_state_store`` (a no-op where Airflow provides none).

    :param context: the task context
    :param key: the store key
    """

    def __init__(self, context: Any, key: str = "progress") -> None:
        self.store = context.get("task_state_store") if hasattr(context, "get") else None
        self.key = key

    def previous(self) -> dict[str, Any] | None:
        """Return what an earlier try of this task instance saved, if anything."""
        if self.store is None:
            return None
        try:
            return self.store.get(self.key)
        except KeyError:
            return None

    def save(self, **values: Any) -> None:
        """Save the current progress (JSON values)."""
        if self.store is not None:
            self.store.set(self.key, values)

    def clear(self) -> None:
        """Forget progress (``full_refresh``: a clear alone does not reset the store)."""
        if self.store is not None:
            try:
                self.store.delete(self.key)
            except KeyError:
                pass
