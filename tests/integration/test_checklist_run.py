"""``resilient-etl checklist run`` executes the twins for real: the validation SQL against the warehouse, the commands."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import insert

from resilient_etl.cli import main
from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import pipeline_runs


def _run(capsys, *kinds: str) -> tuple[int, dict[str, bool | None], str]:
    capsys.readouterr()
    code = main(["checklist", "run", "--kinds", ",".join(kinds), "-o", "json"])
    out = capsys.readouterr()
    return code, {r["twin"]: r["passed"] for r in json.loads(out.out)}, out.err


def test_the_validation_sql_passes_on_a_sound_warehouse_and_names_a_broken_reconciliation(sqlite_warehouse, capsys) -> None:
    WarehouseHook().ensure_schema()
    code, outcomes, err = _run(capsys, "sql", "command")
    assert code == 0, err
    assert {t: v for t, v in outcomes.items() if t.startswith(("sql:", "command:"))} == dict.fromkeys(
        [t for t in outcomes if t.startswith(("sql:", "command:"))], True
    )
    assert all(v is None for t, v in outcomes.items() if t.startswith(("test:", "drill:")))  # not asked for: not run
    with WarehouseHook().begin() as conn:
        conn.execute(
            insert(pipeline_runs)
            .values(run_id="r1", dag_id="company_enrichment", files="[]", rows_in=10, rows_loaded=8, rows_quarantined=1, rows_pending=0)
            .values(status="success", summary="{}", finished_at=dt.datetime.now(dt.UTC))
        )
    code, outcomes, err = _run(capsys, "sql")
    assert code == 1 and outcomes["sql:reconciliation"] is False and outcomes["sql:no-duplicate-suppliers"] is True
    assert "FAILED sql:reconciliation: 1 rows, first ('r1', 10, 8, 1, 0)" in err


def test_recorded_drills_count_as_their_twins(sqlite_warehouse, capsys) -> None:
    WarehouseHook().ensure_schema()
    code, outcomes, _ = _run(capsys, "drill")
    assert code == 0 and all(v is True for t, v in outcomes.items() if t.startswith("drill:"))  # docs/drill-results.json: all passed
