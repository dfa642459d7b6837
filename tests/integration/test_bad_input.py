"""
Bad files and bad rows, on every warehouse: each bad row is quarantined with the line its record
starts on and a named reason, each bad file goes to rejected/ with its reason, and everything else loads.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import quarantine, staged_rows
from resilient_etl.pipeline.extract import extract
from resilient_etl.pipeline.validate import CSV_COLUMNS, validate_staged
from resilient_etl_devtools.sandbox.data import write_sample_csv

RUN = "manual__bad-input"


def _good_rows(tmp_path: Path, n: int) -> list[dict[str, str]]:
    sample = write_sample_csv(tmp_path / "sample" / "s.csv", rows=n, dirty_share=0)
    with sample.path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=header or list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue(), encoding="utf-8", newline="")
    return path


def _stage(tmp_path: Path) -> tuple[WarehouseHook, dict]:
    wh = WarehouseHook()
    wh.ensure_schema()
    summary = extract(wh, landing_dir=tmp_path / "landing", rejected_dir=tmp_path / "rejected", run_id=RUN)
    validate_staged(wh, run_id=RUN)
    return wh, summary


def _quarantined(wh: WarehouseHook) -> list[tuple[str, int, str, str]]:
    q = quarantine.c
    with wh.begin() as conn:
        return [
            tuple(r) for r in conn.execute(select(q.source_file, q.line_number, q.error_category, q.detail).order_by(q.source_file, q.line_number))
        ]


def _valid(wh: WarehouseHook) -> int:
    with wh.begin() as conn:
        return conn.execute(select(func.count()).where(staged_rows.c.run_id == RUN, staged_rows.c.status == "valid")).scalar_one()


def test_control_characters_are_quarantined_with_their_line_on_every_warehouse(warehouse_conn, tmp_path: Path) -> None:
    rows = _good_rows(tmp_path, 8)
    rows[2]["company_name"] = "Acme\x00 Ltd"  # line 4
    rows[3]["town"] = "Bell\x07ton"  # line 5
    _write(tmp_path / "landing" / "a.csv", rows[:6])
    _write(tmp_path / "landing" / "b.csv", rows[6:])  # another file of the same run
    wh, _ = _stage(tmp_path)
    bad = _quarantined(wh)
    assert [(f, line, cat) for f, line, cat, _ in bad] == [("a.csv", 4, "control_character"), ("a.csv", 5, "control_character")]
    assert bad[0][3] == "company_name contains the control character U+0000 at position 5"
    assert "\x00" not in "".join(b[3] for b in bad)
    assert _valid(wh) == 6


def test_a_one_megabyte_field_quarantines_its_row_and_the_file_loads(warehouse_conn, tmp_path: Path) -> None:
    rows = _good_rows(tmp_path, 5)
    rows[1]["address_line_1"] = "x" * 2**20  # line 3
    _write(tmp_path / "landing" / "big.csv", rows)
    wh, summary = _stage(tmp_path)
    assert summary["rejected_files"] == []
    (bad,) = _quarantined(wh)
    assert bad[:3] == ("big.csv", 3, "field_too_long") and "address_line_1 has 1,048,576 characters" in bad[3]
    with wh.begin() as conn:
        stored = conn.execute(select(func.max(func.length(quarantine.c.raw_row)))).scalar_one()
    assert stored < 5000  # the megabyte is not copied into the warehouse
    assert _valid(wh) == 4


def test_a_column_named_twice_rejects_the_file_naming_it(sqlite_warehouse, tmp_path: Path) -> None:
    rows = _good_rows(tmp_path, 3)
    header = [*CSV_COLUMNS, "town"]
    _write(tmp_path / "landing" / "twice.csv", [{**r} for r in rows], header=header)
    _, summary = _stage(tmp_path)
    assert summary["files"] == [] and "header names column 'town' more than once" in summary["rejected_files"][0]["reason"]
    assert (tmp_path / "rejected" / "twice.csv").exists()
    assert "'town' more than once" in (tmp_path / "rejected" / "twice.csv.reason.txt").read_text()


def test_extension_case_and_every_file_left_in_landing_is_logged(sqlite_warehouse, tmp_path: Path, caplog) -> None:
    rows = _good_rows(tmp_path, 3)
    _write(tmp_path / "landing" / "suppliers.CSV", rows)
    (tmp_path / "landing" / "notes.txt").write_text("not data")
    (tmp_path / "landing" / "old").mkdir()
    with caplog.at_level(logging.WARNING, logger="resilient_etl.pipeline.extract"):
        wh, summary = _stage(tmp_path)
    assert summary["files"] == ["suppliers.CSV"] and _valid(wh) == 3
    assert "Left in landing: notes.txt: not a CSV drop (extension '.txt'; drops end in .csv)" in caplog.text
    assert "Left in landing: old: not a regular file" in caplog.text


def test_a_header_only_file_leaves_landing_as_rejected(sqlite_warehouse, tmp_path: Path) -> None:
    _write(tmp_path / "landing" / "empty.csv", [])
    _, summary = _stage(tmp_path)
    assert summary["rejected_files"] == [{"file": "empty.csv", "reason": "empty.csv: header only, no data rows"}]
    assert not (tmp_path / "landing" / "empty.csv").exists() and (tmp_path / "rejected" / "empty.csv").exists()


def test_a_record_spanning_lines_is_reported_at_its_first_line(sqlite_warehouse, tmp_path: Path) -> None:
    rows = _good_rows(tmp_path, 8)
    rows[5]["address_line_1"] = "Unit 4\nRiverside"  # the record starts on line 7 and ends on 8
    rows[5]["postcode"] = "NOT A POSTCODE"
    rows[6]["postcode"] = "ALSO BAD"  # line 9
    _write(tmp_path / "landing" / "multi.csv", rows)
    wh, _ = _stage(tmp_path)
    assert [(line, cat) for _, line, cat, _ in _quarantined(wh)] == [(7, "invalid_postcode"), (9, "invalid_postcode")]


@pytest.mark.parametrize("blank_lines", [1, 2])
def test_blank_lines_do_not_shift_the_line_numbers(sqlite_warehouse, tmp_path: Path, blank_lines: int) -> None:
    rows = _good_rows(tmp_path, 3)
    rows[2]["postcode"] = "BAD"
    path = _write(tmp_path / "landing" / "gaps.csv", rows)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], *[""] * blank_lines, *lines[2:]]) + "\n")
    wh, _ = _stage(tmp_path)
    assert [line for _, line, _, _ in _quarantined(wh)] == [4 + blank_lines]
