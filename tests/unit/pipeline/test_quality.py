"""Data-quality rules and thresholds as pure functions: at, just below and just above every limit."""

from __future__ import annotations

import pytest

from resilient_etl.config import QualityConfig, Threshold
from resilient_etl.pipeline.quality import RULES, evaluate, rule_of, verdict
from resilient_etl.pipeline.validate import CSV_COLUMNS

CONFIG = QualityConfig()


@pytest.mark.parametrize("rule", [r for r in RULES if r != "unknown_columns"])
def test_each_row_rule_at_below_and_above_its_limits(rule: str) -> None:
    limits = getattr(CONFIG, rule)
    rows = 10_000
    cases = {
        # (rows broken) -> expected verdict
        round(limits.warn * rows): "pass",  # at warn
        round(limits.warn * rows) + 1: "warn" if limits.fail > limits.warn else "fail",  # just above warn
        round(limits.fail * rows): "warn" if limits.fail > limits.warn else "pass",  # at fail
        round(limits.fail * rows) + 1: "fail",  # just above fail
    }
    if limits.warn > 0:
        cases[round(limits.warn * rows) - 1] = "pass"  # just below warn
    for broken, expected in cases.items():
        quality = evaluate(
            "f.csv", rows_checked=rows, broken_lines={rule: range(2, 2 + broken)}, columns=CSV_COLUMNS, contract=CSV_COLUMNS, thresholds=CONFIG
        )
        result = next(r for r in quality.results if r.rule == rule)
        assert (result.rows_failed, result.verdict) == (broken, expected), (rule, broken)
        assert quality.verdict == expected


def test_unknown_columns_are_a_share_of_the_contract() -> None:
    extra = ["notes", "vat_number", "region", "iban"]
    pass_ = evaluate("f", rows_checked=10, broken_lines={}, columns=CSV_COLUMNS, contract=CSV_COLUMNS, thresholds=CONFIG)
    warn = evaluate("f", rows_checked=10, broken_lines={}, columns=[*CSV_COLUMNS, "notes"], contract=CSV_COLUMNS, thresholds=CONFIG)
    at_fail = evaluate("f", rows_checked=10, broken_lines={}, columns=[*CSV_COLUMNS, *extra], contract=CSV_COLUMNS, thresholds=CONFIG)
    fail = evaluate("f", rows_checked=10, broken_lines={}, columns=[*CSV_COLUMNS, *extra, "x"], contract=CSV_COLUMNS, thresholds=CONFIG)
    assert [q.verdict for q in (pass_, warn, at_fail, fail)] == ["pass", "warn", "warn", "fail"]  # 4/8 = 0.5 is at fail


def test_a_line_counts_once_per_rule_and_the_report_names_lines() -> None:
    quality = evaluate(
        "f.csv", rows_checked=10, broken_lines={"invalid_postcode": [3, 3, 7]}, columns=CSV_COLUMNS, contract=CSV_COLUMNS, thresholds=CONFIG
    )
    report = quality.report()
    assert report["rules"]["invalid_postcode"]["rows_failed"] == 2 and report["rules"]["invalid_postcode"]["lines"] == [3, 7]
    assert report["verdict"] == "fail" and quality.broken("fail") == ["invalid_postcode"]


def test_row_errors_map_to_rules() -> None:
    assert rule_of("missing_field", "company_number") == "invalid_company_number"
    assert rule_of("missing_field", "postcode") == "missing_fields"
    assert rule_of("malformed_row", "<row>") == "missing_fields"
    assert rule_of("invalid_date", "onboarded_on") == rule_of("invalid_number", "annual_spend_gbp") == "unparseable_values"
    assert rule_of("duplicate_supplier_id", "supplier_id") == "duplicate_supplier_id"


def test_verdict_edges() -> None:
    assert verdict(0.0, warn=0.0, fail=0.0) == "pass"
    assert verdict(1e-9, warn=0.0, fail=0.5) == "warn"
    assert verdict(0.5000001, warn=0.0, fail=0.5) == "fail"


def test_warn_above_fail_is_refused() -> None:
    with pytest.raises(ValueError, match=r"warn \(0.3\) must not be above fail \(0.2\)"):
        Threshold(warn=0.3, fail=0.2)
