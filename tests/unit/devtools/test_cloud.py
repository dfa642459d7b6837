"""The ADF and Fabric pipelines: structurally valid, a broken one rejected with the reason, the stored procedure generated from the schema for the mssql dialect."""

from __future__ import annotations

import copy
import json
import re

import pytest

from resilient_etl_devtools import cloud

ADF = cloud.load(cloud.ADF_PIPELINE)


def _activity(doc: dict, name: str) -> dict:
    def walk(activities):
        for a in activities:
            yield a
            for key in ("activities", "ifTrueActivities", "ifFalseActivities"):
                yield from walk(a.get("typeProperties", {}).get(key, []))

    return next(a for a in walk(doc["properties"]["activities"]) if a["name"] == name)


def test_both_pipelines_are_valid_and_their_references_exist() -> None:
    assert cloud.validate_pipeline(ADF, "adf") == []
    assert cloud.validate_pipeline(cloud.load(cloud.FABRIC_PIPELINE), "fabric") == []
    assert _activity(ADF, "LookupPostcodes")["type"] == _activity(ADF, "CallCompaniesHouse")["type"] == "WebActivity"  # both APIs
    assert _activity(ADF, "LookupPostcodes")["policy"]["retry"] == 3  # the native fixed-interval retry, beside the jittered loop
    text = cloud.ADF_PIPELINE.read_text()
    for kind, folder in (("DatasetReference", "dataset"), ("LinkedServiceReference", "linkedService")):
        for name in set(re.findall(rf'"referenceName": "(\w+)",\s*"type": "{kind}"', text)):
            assert (cloud.CLOUD / "adf" / folder / f"{name}.json").exists(), (kind, name)


@pytest.mark.parametrize(
    ("break_it", "problem"),
    [
        (lambda d: _activity(d, "ReadBreakerState").update(type="Lookups"), "ReadBreakerState: unknown activity type 'Lookups'"),
        (
            lambda d: _activity(d, "ListChunks")["dependsOn"][0].update(activity="Nowhere"),
            "ListChunks: depends on 'Nowhere', which is not an activity",
        ),
        (lambda d: _activity(d, "FailOnLoad")["dependsOn"][0].update(dependencyConditions=["Finished"]), "dependency conditions ['Finished']"),
        (lambda d: _activity(d, "CopyDropToStaging")["policy"].update(retries=3), "policy.retries is not a policy property"),
        (lambda d: _activity(d, "CopyDropToStaging")["policy"].update(timeout="30m"), "policy.timeout '30m' is not [d.]hh:mm:ss"),
        (lambda d: _activity(d, "LoadChunk")["policy"].update(retryIntervalInSeconds=5), "policy.retryIntervalInSeconds 5 is outside 30-86400"),
        (lambda d: _activity(d, "BreakerGate")["typeProperties"].update(variableName="state"), "sets 'state', which is not a pipeline variable"),
        (
            lambda d: _activity(d, "IfApiGaveUp")["typeProperties"]["ifTrueActivities"].append(
                copy.deepcopy(_activity(d, "UntilCompaniesHouseAnswers"))
            ),
            "a Until cannot be nested in an If Condition",
        ),
        (
            lambda d: d["properties"]["activities"].append(copy.deepcopy(d["properties"]["activities"][0])),
            "activity name 'CopyDropToStaging' is used twice",
        ),
    ],
)
def test_a_broken_pipeline_is_rejected_naming_the_activity(break_it, problem: str) -> None:
    doc = copy.deepcopy(ADF)
    break_it(doc)
    problems = cloud.validate_pipeline(doc, "adf")
    assert any(problem in p for p in problems), problems


def test_the_fabric_notifications_are_not_adf_activities() -> None:
    fabric = cloud.load(cloud.FABRIC_PIPELINE)
    assert {_activity(fabric, "AlertCopyFailed")["type"], _activity(fabric, "AlertLoadFailed")["type"]} == {"Teams", "Office365Outlook"}
    assert any("unknown activity type 'Teams'" in p for p in cloud.validate_pipeline({**fabric, "name": "x"}, "adf"))


def test_the_stored_procedure_is_generated_from_the_schema_for_sql_server() -> None:
    for path, text in cloud.generated_sql().items():
        assert path.read_text() == text, f"{path.name} is stale: run `resilient-etl-dev cloud --write`"
    sql = cloud.stored_procedure_sql()
    assert "SAVE TRANSACTION chunk;" in sql and "ROLLBACK TRANSACTION chunk;" in sql  # SQLAlchemy's savepoint SQL for mssql
    assert "MERGE INTO suppliers WITH (HOLDLOCK) AS target" in sql and "RELEASE SAVEPOINT" not in sql
    declared = re.findall(r"@(\w+) (?:NVARCHAR|INT)", sql.split("AS\nBEGIN")[0])
    called = list(_activity(ADF, "LoadChunk")["typeProperties"]["storedProcedureParameters"])
    assert declared == called  # the pipeline passes exactly the parameters the procedure declares
    assert json.dumps(_activity(ADF, "CallCompaniesHouse")["policy"]) == json.dumps(
        {"timeout": "0.00:00:10", "retry": 0, "retryIntervalInSeconds": 30, "secureInput": True, "secureOutput": False}
    )


def test_the_breaker_procedure_writes_the_stores_own_table_and_the_pipeline_calls_it() -> None:
    sql = cloud.breaker_procedure_sql()
    assert "MERGE INTO breaker_state WITH (HOLDLOCK)" in sql and "DATEDIFF_BIG(millisecond, '19700101'" in sql  # epoch seconds, as the store
    called = _activity(ADF, "OpenBreaker")["typeProperties"]
    assert called["storedProcedureName"] == "dbo.usp_breaker_open" and list(called["storedProcedureParameters"]) == ["name"]


def test_the_docs_map_every_capability_the_issue_names_and_link_real_files() -> None:
    adf = (cloud.PROJECT_ROOT / "docs" / "cloud" / "azure-data-factory.md").read_text()
    for term in (
        "policy.retry",
        "retryIntervalInSeconds",
        "policy.timeout",
        "secureInput",
        "secureOutput",
        "Succeeded / Failed / Skipped / Completed",
        "Fail activity",
        "Until + Wait",
        "tumbling-window trigger `retryPolicy`",
        "rerun from the failed activity",
        "Azure Monitor metrics",
        "alert rules",
        "action groups",
        "Jittered exponential backoff",
        "Circuit breakers",
        "Error-type-aware retry",
        "Exactly-once chunk checkpoints",
        "Cloud or on-premises",
        "**Recommendation.**",
        "Unverified here",
    ):
        assert term in adf, term
    fabric = (cloud.PROJECT_ROOT / "docs" / "cloud" / "fabric.md").read_text()
    for term in (
        "try-catch",
        "do-if-else",
        "do-if-skip-else",
        "Teams",
        "Outlook",
        "monitoring hub",
        "Failure scenarios",
        "lessons learned",
        "Unverified here",
    ):
        assert term in fabric, term
    for doc in (adf, fabric):
        for link in re.findall(r"\]\(\.\./\.\./([^)]+)\)", doc):
            assert (cloud.PROJECT_ROOT / link).exists(), link
