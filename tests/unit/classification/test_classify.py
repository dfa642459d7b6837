"""The failure taxonomy as pure decisions: classify(), the matrix in config, the generated doc, rotation, escalation."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import redis
import requests
import sqlalchemy.exc
import yaml

from _support.paths import CONFIG_FILE as DEFAULT_CONFIG_PATH
from _support.paths import REPO as PROJECT_ROOT
from resilient_etl import exceptions as errors
from resilient_etl.alerting.incidents import Incident, due_steps, on_call
from resilient_etl.classification import category_of, classify
from resilient_etl.config import load_config, parse_config
from resilient_etl.exceptions import Category, ConfigError, Severity
from resilient_etl_devtools.docgen import DOC_PATH, render

CFG = load_config(DEFAULT_CONFIG_PATH, environ={})
MATRIX = CFG.classification.entries()


class _PgError(Exception):
    def __init__(self, pgcode: str) -> None:
        super().__init__(pgcode)
        self.pgcode = pgcode


def _db(pgcode: str) -> sqlalchemy.exc.DBAPIError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, _PgError(pgcode))


CASES = [
    (errors.SharedStateUnavailableError("redis down", store="redis breaker_store"), Category.SHARED_STATE_UNAVAILABLE, True),
    (redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"), Category.SHARED_STATE_UNAVAILABLE, True),
    (errors.ApiConnectionError("reset", service="postcodes_io"), Category.NETWORK, True),
    (requests.ConnectionError("refused"), Category.NETWORK, True),
    (ConnectionResetError(104, "reset"), Category.NETWORK, True),
    (errors.ApiTimeoutError("slow", service="postcodes_io"), Category.TIMEOUT, True),
    (TimeoutError("slow"), Category.TIMEOUT, True),
    (requests.ReadTimeout("slow"), Category.TIMEOUT, True),
    (errors.ApiServerError("503", service="companies_house", status_code=503), Category.UPSTREAM_5XX, True),
    (errors.ApiBadResponseError("truncated", service="postcodes_io"), Category.UPSTREAM_BAD_RESPONSE, True),
    (errors.ApiRateLimitError("429", service="companies_house", reset_at=1.0), Category.RATE_LIMIT, True),
    (errors.ApiAuthError("401", service="companies_house", status_code=401), Category.AUTH, False),
    (errors.ApiClientError("400", service="companies_house", status_code=400), Category.UPSTREAM_REJECTED, False),
    (ConfigError("bad", field="load.batch_size"), Category.CONFIGURATION, False),
    (errors.BadInputFileError("not a csv", path="a.csv", line=3), Category.BAD_INPUT_FILE, False),
    (errors.DataQualityError("too many bad rows", files={}), Category.DATA_QUALITY, False),
    (errors.QuarantineThresholdError("rolled back", rejected=9, rows=10, threshold=0.05), Category.DATA_QUALITY, False),
    (errors.WarehouseUnavailableError("down"), Category.DATABASE_UNAVAILABLE, True),
    (_db("57P01"), Category.DATABASE_UNAVAILABLE, True),
    (_db("40P01"), Category.DEADLOCK, True),
    (errors.DeadlockError("victim"), Category.DEADLOCK, True),
    (errors.ReconciliationError("lost rows", counts={}), Category.INTEGRITY, False),
    (errors.DiskFullError("full"), Category.FILESYSTEM, False),
    (_db("53100"), Category.FILESYSTEM, False),
    (OSError(28, "No space left on device"), Category.FILESYSTEM, False),
    (PermissionError(13, "read-only"), Category.FILESYSTEM, False),
    (errors.FallbackThresholdError("too many fallbacks", source="companies_house", non_live_share=0.5, threshold=0.25), Category.BREAKER_OPEN, False),
    (errors.DeadlineMissedError("late", scope="dag_run", name="warn", limit_seconds=60), Category.DEADLINE_MISSED, False),
    (errors.DrDrillFailedError("drill dr-restore missed a target", scenario="dr-restore", missed=["RTO (s)"]), Category.DR_DRILL_FAILED, False),
    (KeyError("surprise"), Category.UNKNOWN, False),
]


@pytest.mark.parametrize(("exc", "category", "transient"), CASES, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_classify_maps_every_failure_to_category_severity_and_action(exc, category, transient) -> None:
    c = classify(exc, MATRIX)
    assert (c.category, c.transient) == (category, transient)
    assert c.severity == MATRIX[category.value].severity
    assert c.action == MATRIX[category.value].action and c.runbook == MATRIX[category.value].runbook
    assert c.error_type == type(exc).__name__


def test_every_category_is_covered_by_the_cases_above() -> None:
    assert {c for _, c, _ in CASES} == set(Category)


def test_an_untyped_error_is_classified_by_its_typed_cause() -> None:
    try:
        try:
            raise errors.ApiAuthError("401", service="companies_house", status_code=401)
        except errors.ApiAuthError as inner:
            raise RuntimeError("enrichment failed") from inner
    except RuntimeError as outer:
        assert category_of(outer) == (Category.AUTH, False)


def test_the_matrix_decides_severity_not_the_code() -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["classification"]["network"]["severity"] = "SEV1"
    cfg = parse_config(data, base_dir=PROJECT_ROOT / "config")
    assert classify(ConnectionError("x"), cfg.classification.entries()).severity == Severity.SEV1


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["classification"].pop("deadlock"), "classification.deadlock"),
        (lambda d: d["classification"]["auth"].update(severity="SEV9"), "classification.auth.severity"),
        (lambda d: d["alerts"]["oncall"]["primary"].append("mallory"), "alerts.oncall"),
        (lambda d: d["alerts"]["routes"]["SEV1"]["escalation"].reverse(), "alerts.routes.SEV1"),
        (lambda d: d["alerts"]["routes"]["SEV2"].update(channels=["pager"]), "alerts.routes.SEV2.channels"),
        (lambda d: d["deadlines"]["dag_run"].append({"name": "warn", "after_minutes": 5, "severity": "SEV1"}), "deadlines"),
        (lambda d: d["deadlines"]["tasks"].update(load=0), "deadlines"),
    ],
)
def test_a_bad_matrix_or_route_fails_with_the_field_named(edit, field: str) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    edit(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=PROJECT_ROOT / "config")
    assert info.value.field.startswith(field), info.value.field


def test_the_generated_classification_doc_is_current() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render(CFG), "stale: run `resilient-etl-dev classification --write`"


def test_every_runbook_section_in_the_matrix_exists() -> None:
    headings = set(re.findall(r"^## (\S+)$", (PROJECT_ROOT / "docs" / "recovery.md").read_text(), re.MULTILINE))
    assert {e.runbook for e in MATRIX.values()} <= headings


def test_on_call_rotates_per_period() -> None:
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    week = dt.timedelta(days=7)
    assert [on_call(CFG.alerts.oncall, "primary", start + i * week + dt.timedelta(days=3)).name for i in range(3)] == ["alice", "bob", "alice"]
    assert on_call(CFG.alerts.oncall, "secondary", start).name == "bob"
    assert on_call(CFG.alerts.oncall, "lead", start + 5 * week).email == "carol@example.com"


def _incident(status: str = "open", level: int = 1) -> Incident:
    t0 = dt.datetime(2026, 11, 26, 9, tzinfo=dt.UTC)
    return Incident(1, "d", "t", "database_unavailable", Severity.SEV1, status, level, 1, None, None, None, t0, t0)


@pytest.mark.parametrize(("minutes", "level", "due"), [(0, 0, [0]), (14, 1, []), (15, 1, [1]), (45, 1, [1, 2]), (45, 2, [2]), (45, 3, [])])
def test_due_escalation_steps(minutes: float, level: int, due: list[int]) -> None:
    steps = CFG.alerts.routes.SEV1.escalation
    now = dt.datetime(2026, 11, 26, 9, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)
    assert due_steps(_incident(level=level), steps, now) == due


def test_acknowledged_incidents_do_not_escalate() -> None:
    now = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    assert due_steps(_incident(status="acknowledged"), CFG.alerts.routes.SEV1.escalation, now) == []
