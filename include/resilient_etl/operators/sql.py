"""Operator running SQL statements each in its own savepoint, with a per-statement error policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from resilient_etl.operators.base import WarehouseOperator

OnError = Literal["abort", "continue"]


class SavepointSQLOperator(WarehouseOperator):
    """
    Run statements in one transaction, each under its own savepoint.

    A statement that fails is rolled back to its savepoint; then ``abort`` rolls the whole transaction
    back and fails the task (typed), while ``continue`` keeps the work of the other statements and
    reports the one rolled back. The report (what ran, what was rolled back and why) is the XCom.

    :param sql: statements; each a string (``on_error`` applies) or ``{"sql": ..., "on_error": ...}``
    :param on_error: the default policy: ``abort`` or ``continue``
    :param parameters: bind parameters for every statement
    """

    template_fields: Sequence[str] = (*WarehouseOperator.template_fields, "sql", "parameters")
    template_ext: Sequence[str] = (".sql",)

    def __init__(
        self, *, sql: Sequence[str | dict[str, Any]], on_error: OnError = "abort", parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if on_error not in ("abort", "continue"):
            raise ValueError(f"on_error must be 'abort' or 'continue', got {on_error!r}")
        self.sql = list(sql)
        self.on_error = on_error
        self.parameters = parameters or {}

    def _statements(self) -> list[tuple[str, OnError]]:
        out = []
        for i, item in enumerate(self.sql):
            if isinstance(item, str):
                out.append((item, self.on_error))
            else:
                policy = item.get("on_error", self.on_error)
                if policy not in ("abort", "continue"):
                    raise ValueError(f"sql[{i}].on_error must be 'abort' or 'continue', got {policy!r}")
                out.append((item["sql"], policy))
        return out

    def execute(self, context: Any) -> dict[str, Any]:
        statements = self._statements()
        report = self.warehouse.run_in_savepoints(statements, self.parameters)
        self.log.info("Ran %s statements; %s rolled back: %s", len(statements), len(report["rolled_back"]), report["rolled_back"])
        return report
