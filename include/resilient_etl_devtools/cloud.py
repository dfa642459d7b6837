"""
The same supplier flow on Azure Data Factory and Microsoft Fabric (``cloud/``): a structural validator
for their pipeline JSON, and the T-SQL of the load's stored procedure, generated from this project's
own tables and compiled for the mssql dialect so it cannot drift from the warehouse schema.

The validator checks what the services' authoring would refuse or silently ignore: unknown activity
types, dependencies on activities that do not exist (in the same container), dependency conditions
outside Succeeded/Failed/Skipped/Completed, policy properties under other names, and policy values in
the wrong format (``timeout`` as ``d.hh:mm:ss``, ``retryIntervalInSeconds`` 30-86400).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from resilient_etl_devtools.paths import PROJECT_ROOT

CLOUD = PROJECT_ROOT / "cloud"
ADF_PIPELINE = CLOUD / "adf" / "pipeline.json"
FABRIC_PIPELINE = CLOUD / "fabric" / "pipeline-content.json"
PROCEDURE_FILE = CLOUD / "adf" / "sql" / "usp_load_supplier_chunk.sql"
BREAKER_FILE = CLOUD / "adf" / "sql" / "usp_breaker_open.sql"

# Activity types of the pipelines here (ADF's names; Fabric adds its notification activities).
ACTIVITY_TYPES = {
    "adf": {
        "Copy",
        "WebActivity",
        "Until",
        "Wait",
        "SetVariable",
        "AppendVariable",
        "IfCondition",
        "Switch",
        "ForEach",
        "Lookup",
        "Script",
        "SqlServerStoredProcedure",
        "ExecutePipeline",
        "GetMetadata",
        "Delete",
        "Validation",
        "Filter",
        "Fail",
    }
}
ACTIVITY_TYPES["fabric"] = ACTIVITY_TYPES["adf"] | {"Office365Outlook", "Teams", "InvokePipeline"}
CONDITIONS = {"Succeeded", "Failed", "Skipped", "Completed"}
POLICY_KEYS = {"timeout", "retry", "retryIntervalInSeconds", "secureInput", "secureOutput"}
# the ActivityPolicy.timeout pattern of the ADF REST API reference: [d.]hh:mm:ss (default 7 days)
TIMEOUT = re.compile(r"^((\d+)\.)?(\d\d):(60|[0-5][0-9]):(60|[0-5][0-9])$")
NESTED = {"Until": ("activities",), "ForEach": ("activities",), "IfCondition": ("ifTrueActivities", "ifFalseActivities")}
CONTROL = {"Until", "ForEach", "IfCondition", "Switch"}  # none of them may sit inside an If Condition or a Switch


def _policy_problems(where: str, policy: Any) -> list[str]:
    if not isinstance(policy, dict):
        return [f"{where}: policy must be an object"]
    problems = [f"{where}: policy.{k} is not a policy property ({', '.join(sorted(POLICY_KEYS))})" for k in policy if k not in POLICY_KEYS]
    if "timeout" in policy and not (isinstance(policy["timeout"], str) and TIMEOUT.match(policy["timeout"])):
        problems.append(f"{where}: policy.timeout {policy['timeout']!r} is not [d.]hh:mm:ss")
    retry = policy.get("retry", 0)
    if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
        problems.append(f"{where}: policy.retry {retry!r} is not a count")
    interval = policy.get("retryIntervalInSeconds", 30)  # default 30 (API reference); 30-86400 is the authoring UI's range
    if not isinstance(interval, int) or isinstance(interval, bool) or not 30 <= interval <= 86_400:
        problems.append(f"{where}: policy.retryIntervalInSeconds {interval!r} is outside 30-86400")
    for key in ("secureInput", "secureOutput"):
        if key in policy and not isinstance(policy[key], bool):
            problems.append(f"{where}: policy.{key} must be true or false")
    return problems


def _activities_problems(activities: Any, where: str, flavour: str, variables: set[str], *, in_branch: bool = False) -> list[str]:
    if not isinstance(activities, list) or not activities:
        return [f"{where}: activities must be a non-empty list"]
    problems: list[str] = []
    names = [a.get("name") for a in activities if isinstance(a, dict)]
    problems += [f"{where}: activity name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for a in activities:
        if not isinstance(a, dict) or not a.get("name"):
            problems.append(f"{where}: every activity needs a name")
            continue
        here = f"{where}/{a['name']}"
        if a.get("type") not in ACTIVITY_TYPES[flavour]:
            problems.append(f"{here}: unknown activity type {a.get('type')!r}")
        for dep in a.get("dependsOn", []):
            if dep.get("activity") not in names:
                problems.append(f"{here}: depends on {dep.get('activity')!r}, which is not an activity of {where}")
            bad = set(dep.get("dependencyConditions", [])) - CONDITIONS
            if bad or not dep.get("dependencyConditions"):
                problems.append(f"{here}: dependency conditions {sorted(bad) or 'missing'} (allowed: {', '.join(sorted(CONDITIONS))})")
        if "policy" in a:
            problems += _policy_problems(here, a["policy"])
        if in_branch and a.get("type") in CONTROL:
            problems.append(f"{here}: a {a['type']} cannot be nested in an If Condition")
        if a.get("type") in ("SetVariable", "AppendVariable") and a.get("typeProperties", {}).get("variableName") not in variables:
            problems.append(f"{here}: sets {a.get('typeProperties', {}).get('variableName')!r}, which is not a pipeline variable")
        properties = a.get("typeProperties", {})
        if a.get("type") == "IfCondition":
            branches = [k for k in NESTED["IfCondition"] if k in properties]
            if not branches:
                problems.append(f"{here}: an If Condition needs ifTrueActivities or ifFalseActivities")
            for key in branches:
                problems += _activities_problems(properties[key], f"{here}.{key}", flavour, variables, in_branch=True)
        elif a.get("type") in NESTED:
            problems += _activities_problems(properties.get("activities"), f"{here}.activities", flavour, variables, in_branch=in_branch)
    return problems


def validate_pipeline(doc: Any, flavour: str = "adf") -> list[str]:
    """
    Return what is wrong with a pipeline definition (empty: it is sound).

    :param doc: the parsed JSON (ADF: ``{"name", "properties": {"activities"}}``; Fabric's ``pipeline-content.json``: ``{"properties": {"activities"}}``)
    :param flavour: ``adf`` or ``fabric`` (which activity types exist)
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("properties"), dict):
        return ["the pipeline needs a properties object"]
    if flavour == "adf" and not doc.get("name"):
        return ["an ADF pipeline needs a name"]
    variables = set(doc["properties"].get("variables", {}))
    return _activities_problems(doc["properties"].get("activities"), doc.get("name", "pipeline"), flavour, variables)


def load(path: Path) -> Any:
    """Read a pipeline JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


def stored_procedure_sql() -> str:
    """
    Return ``dbo.usp_load_supplier_chunk``: load one chunk of a run's validated rows from ``staged_rows`` into
    ``suppliers`` (MERGE, as this project's SQL Server loader) with its ``etl_checkpoints`` row, under a
    savepoint; a chunk that fails rolls back to the savepoint and its rows are quarantined instead.
    """
    from sqlalchemy import and_, bindparam, select
    from sqlalchemy.dialects import mssql
    from sqlalchemy.sql.expression import RollbackToSavepointClause, SavepointClause

    from resilient_etl.hooks.warehouse.schema import etl_checkpoints, staged_rows, suppliers

    dialect = mssql.dialect()
    q = dialect.identifier_preparer.quote
    s = staged_rows.c
    columns = [c.name for c in staged_rows.columns if c.name in suppliers.c and c.name not in ("run_id", "source_file")]
    # no ORDER BY: T-SQL refuses one in a derived table without TOP
    source = select(*(s[c] for c in columns), s.line_number).where(
        and_(
            s.run_id == bindparam("run_id"),
            s.source_file == bindparam("source_file"),
            s.status == "valid",
            s.line_number.between(bindparam("first_line"), bindparam("last_line")),
        )
    )
    source_sql = " ".join(str(source.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})).split())
    source_sql = re.sub(r"%\((\w+)\)s|:(\w+)", lambda m: "@" + (m.group(1) or m.group(2)), source_sql)
    source_sql = source_sql.replace("@status_1", "N'valid'")
    written = [*columns, "source_file", "source_line", "run_id", "enrichment_status", "loaded_at"]
    values = [f"source.{q(c)}" for c in columns] + ["@source_file", "source.line_number", "@run_id", "N'pending'", "SYSUTCDATETIME()"]
    on = f"target.{q('supplier_id')} = source.{q('supplier_id')}"
    updates = ", ".join(f"target.{q(c)} = {v}" for c, v in zip(written, values, strict=True) if c != "supplier_id")
    save = str(SavepointClause("chunk").compile(dialect=dialect))
    rollback = str(RollbackToSavepointClause("chunk").compile(dialect=dialect))
    checkpoint_cols = ", ".join(q(c.name) for c in etl_checkpoints.columns if c.name not in ("hostname", "try_number"))
    lines = [
        "-- Generated by `resilient-etl-dev cloud --write` from include/resilient_etl/hooks/warehouse/schema.py for the mssql dialect:",
        "-- do not edit here. The SQL Server counterpart of the project's loader: one chunk, one savepoint, one checkpoint row.",
        "CREATE OR ALTER PROCEDURE dbo.usp_load_supplier_chunk",
        "    @run_id NVARCHAR(250), @source_file NVARCHAR(255), @chunk_index INT, @first_line INT, @last_line INT",
        "AS",
        "BEGIN",
        "    SET NOCOUNT ON;",
        "    SET XACT_ABORT OFF;  -- a failed chunk must leave the transaction open to roll back to the savepoint",
        "    IF EXISTS (SELECT 1 FROM etl_checkpoints WHERE run_id = @run_id AND task_id = N'load' AND source_file = @source_file AND chunk_index = @chunk_index)",
        "        RETURN 0;  -- exactly once: a retried activity skips a chunk already committed",
        "    BEGIN TRANSACTION;",
        f"    {save};",
        "    BEGIN TRY",
        f"        MERGE INTO {q('suppliers')} WITH (HOLDLOCK) AS target",
        f"        USING ({source_sql}) AS source",
        f"        ON {on}",
        f"        WHEN MATCHED THEN UPDATE SET {updates}",
        f"        WHEN NOT MATCHED THEN INSERT ({', '.join(q(c) for c in written)}) VALUES ({', '.join(values)});",
        f"        INSERT INTO {q('etl_checkpoints')} ({checkpoint_cols})",
        "        VALUES (N'company_enrichment', @run_id, N'load', -1, @source_file, @chunk_index, @first_line, @last_line,",
        "                @@ROWCOUNT, SYSDATETIMEOFFSET());",
        "        COMMIT TRANSACTION;",
        "    END TRY",
        "    BEGIN CATCH",
        f"        IF XACT_STATE() = 1 {rollback};",
        "        UPDATE staged_rows SET status = N'quarantined'",
        "            WHERE run_id = @run_id AND source_file = @source_file AND line_number BETWEEN @first_line AND @last_line;",
        "        IF XACT_STATE() = 1 COMMIT TRANSACTION; ELSE IF XACT_STATE() = -1 ROLLBACK TRANSACTION;",
        "        THROW;  -- the activity fails; its retry policy and the pipeline's failure path take over",
        "    END CATCH",
        "END;",
    ]
    return "\n".join(lines) + "\n"


def breaker_procedure_sql() -> str:
    """
    Return ``dbo.usp_breaker_open``: open breaker ``@name`` in ``breaker_state``, the table this project's SQL
    store keeps (``opened_at`` in epoch seconds), so a run that gave up stops the next ones calling.
    """
    from sqlalchemy.dialects import mssql

    from resilient_etl.resilience.stores.sql import breaker_state

    q = mssql.dialect().identifier_preparer.quote
    columns = [c.name for c in breaker_state.columns]
    assert columns == ["name", "state", "opened_at", "probe_until", "consecutive_failures", "half_open_successes", "updated_at"], columns
    now = "CAST(DATEDIFF_BIG(millisecond, '19700101', SYSUTCDATETIME()) AS FLOAT) / 1000"
    values = ["@name", "N'open'", now, "0", "1", "0", "SYSDATETIMEOFFSET()"]
    updates = ", ".join(f"target.{q(c)} = {v}" for c, v in zip(columns, values, strict=True) if c not in ("name", "consecutive_failures"))
    lines = [
        "-- Generated by `resilient-etl-dev cloud --write` from include/resilient_etl/resilience/stores/sql.py for the mssql dialect:",
        "-- do not edit here. Opens a circuit breaker in the table the project's SQL store shares with every worker.",
        "CREATE OR ALTER PROCEDURE dbo.usp_breaker_open @name NVARCHAR(100)",
        "AS",
        "BEGIN",
        "    SET NOCOUNT ON;",
        f"    MERGE INTO {q('breaker_state')} WITH (HOLDLOCK) AS target",
        "    USING (VALUES (@name)) AS source (name)",
        "    ON target.name = source.name",
        f"    WHEN MATCHED THEN UPDATE SET {updates}, target.consecutive_failures = target.consecutive_failures + 1",
        f"    WHEN NOT MATCHED THEN INSERT ({', '.join(q(c) for c in columns)}) VALUES ({', '.join(values)});",
        "END;",
    ]
    return "\n".join(lines) + "\n"


def generated_sql() -> dict[Path, str]:
    """Return the generated T-SQL files: path -> content."""
    return {PROCEDURE_FILE: stored_procedure_sql(), BREAKER_FILE: breaker_procedure_sql()}
