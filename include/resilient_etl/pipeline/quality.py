"""
Data-quality checks on each file, against the ``quality`` thresholds of the config.

Each rule yields a share (of the file's rows, or for ``unknown_columns`` of the contract's columns)
compared with two thresholds: at or below ``warn`` passes, above ``warn`` warns (the file loads and
the warning is recorded), above ``fail`` fails (the file is not loaded). Pure functions: the step that
applies them is in :mod:`resilient_etl.pipeline.validate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RULES = ("invalid_postcode", "invalid_company_number", "missing_fields", "duplicate_supplier_id", "unparseable_values", "unknown_columns")
_VERDICT_ORDER = {"pass": 0, "warn": 1, "fail": 2}


def rule_of(category: str, field_name: str) -> str:
    """Map a row error (category, field) to the quality rule it counts against."""
    if category == "missing_field":
        return "invalid_company_number" if field_name == "company_number" else "missing_fields"
    if category == "malformed_row":
        return "missing_fields"
    if category in ("invalid_number", "invalid_date", "field_too_long", "control_character"):
        return "unparseable_values"
    return category  # invalid_postcode, invalid_company_number, duplicate_supplier_id


def verdict(share: float, *, warn: float, fail: float) -> str:
    """Return ``pass``, ``warn`` or ``fail`` for a share: a limit is broken only when exceeded."""
    if share > fail:
        return "fail"
    if share > warn:
        return "warn"
    return "pass"


@dataclass(frozen=True)
class RuleResult:
    rule: str
    rows_checked: int
    rows_failed: int
    share: float
    warn: float
    fail: float
    verdict: str
    lines: tuple[int, ...] = ()


@dataclass(frozen=True)
class FileQuality:
    """The quality of one file: every rule's result and the file's overall verdict."""

    source_file: str
    results: tuple[RuleResult, ...]
    verdict: str = field(init=False)

    def __post_init__(self) -> None:
        worst = max((r.verdict for r in self.results), key=_VERDICT_ORDER.__getitem__, default="pass")
        object.__setattr__(self, "verdict", worst)

    def broken(self, level: str) -> list[str]:
        """Return the rules at exactly ``level`` (``warn`` or ``fail``)."""
        return [r.rule for r in self.results if r.verdict == level]

    def report(self) -> dict[str, Any]:
        """Return the file's report: for each rule, its numbers, thresholds, verdict and broken lines."""
        return {
            "file": self.source_file,
            "verdict": self.verdict,
            "rules": {
                r.rule: {
                    "rows_failed": r.rows_failed,
                    "rows_checked": r.rows_checked,
                    "share": round(r.share, 6),
                    "warn": r.warn,
                    "fail": r.fail,
                    "verdict": r.verdict,
                    "lines": list(r.lines),
                }
                for r in self.results
            },
        }


def evaluate(
    source_file: str,
    *,
    rows_checked: int,
    broken_lines: Mapping[str, Iterable[int]],
    columns: Iterable[str],
    contract: Iterable[str],
    thresholds: Any,
) -> FileQuality:
    """
    Evaluate one file against every rule.

    :param source_file: the file's name
    :param rows_checked: its data rows
    :param broken_lines: rule -> the lines that broke it (a line may break several rules)
    :param columns: the file's header
    :param contract: the contract's columns
    :param thresholds: the ``quality`` config (one ``warn``/``fail`` pair per rule)
    """
    contract = list(contract)
    unknown = [c for c in columns if c and c not in contract]
    results = []
    for rule in RULES:
        limits = getattr(thresholds, rule)
        if rule == "unknown_columns":
            failed, base, lines = len(unknown), len(contract), ()
        else:
            lines = tuple(sorted(set(broken_lines.get(rule, ()))))
            failed, base = len(lines), rows_checked
        share = failed / base if base else 0.0
        results.append(
            RuleResult(rule, rows_checked, failed, share, limits.warn, limits.fail, verdict(share, warn=limits.warn, fail=limits.fail), lines)
        )
    return FileQuality(source_file, tuple(results))
