"""Validate: a pure rule set per row (:func:`validate_row`) and the step that applies it to a run."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from resilient_etl.normalise import normalise_company_number, normalise_postcode
from resilient_etl.pipeline.staging import Quarantined, quarantine_rows, set_status
from resilient_etl.schema import staged_rows

if TYPE_CHECKING:
    from resilient_etl.hooks.warehouse import WarehouseHook

CSV_COLUMNS = (
    "supplier_id",
    "company_number",
    "company_name",
    "address_line_1",
    "town",
    "postcode",
    "annual_spend_gbp",
    "onboarded_on",
)
REQUIRED_FIELDS = ("supplier_id", "company_number", "company_name", "postcode", "onboarded_on")
MAX_LENGTHS = {"supplier_id": 64, "company_name": 255, "address_line_1": 255, "town": 100}
EXTRA_FIELDS_KEY = "_extra_fields"


@dataclass(frozen=True)
class RowError:
    """One rule a row broke: a category (for quarantine and metrics) and a detail naming the field."""

    category: str
    field: str
    detail: str


def validate_row(raw: dict[str, Any]) -> tuple[dict[str, Any] | None, list[RowError]]:
    """
    Validate one supplier row; return ``(clean record, [])`` or ``(None, errors)``.

    :param raw: the row as read from the CSV (strings; missing trailing fields are None)
    """
    errors: list[RowError] = []
    if raw.get(EXTRA_FIELDS_KEY):
        errors.append(RowError("malformed_row", "<row>", f"{len(raw[EXTRA_FIELDS_KEY])} more fields than the header"))
    values = {c: (raw.get(c) or "").strip() for c in CSV_COLUMNS}
    for name in REQUIRED_FIELDS:
        if not values[name]:
            errors.append(RowError("missing_field", name, f"{name} is empty"))
    for name, limit in MAX_LENGTHS.items():
        if len(values[name]) > limit:
            errors.append(RowError("field_too_long", name, f"{name} has {len(values[name])} characters (max {limit})"))

    postcode = normalise_postcode(values["postcode"]) if values["postcode"] else None
    if values["postcode"] and postcode is None:
        errors.append(RowError("invalid_postcode", "postcode", f"postcode {values['postcode']!r} is not a UK postcode"))
    company_number = normalise_company_number(values["company_number"]) if values["company_number"] else None
    if values["company_number"] and company_number is None:
        errors.append(
            RowError("invalid_company_number", "company_number", f"company_number {values['company_number']!r} is not 8 letters/digits")
        )
    spend: str | None = None
    if values["annual_spend_gbp"]:
        try:
            amount = Decimal(values["annual_spend_gbp"].replace(",", "").lstrip("£"))
            if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
                raise InvalidOperation
            spend = str(amount.quantize(Decimal("0.01")))
        except InvalidOperation:
            errors.append(
                RowError("invalid_number", "annual_spend_gbp", f"annual_spend_gbp {values['annual_spend_gbp']!r} is not an amount")
            )
    onboarded: str | None = None
    if values["onboarded_on"]:
        try:
            onboarded = dt.date.fromisoformat(values["onboarded_on"]).isoformat()
        except ValueError:
            errors.append(RowError("invalid_date", "onboarded_on", f"onboarded_on {values['onboarded_on']!r} is not an ISO date"))
    if errors:
        return None, errors
    return {
        "supplier_id": values["supplier_id"],
        "company_number": company_number,
        "company_name": values["company_name"],
        "address_line_1": values["address_line_1"] or None,
        "town": values["town"] or None,
        "postcode": postcode,
        "annual_spend_gbp": spend,
        "onboarded_on": onboarded,
    }, []


def validate_staged(warehouse: WarehouseHook, *, run_id: str) -> dict[str, Any]:
    """
    Validate the run's staged rows: good ones become ``valid``, bad ones go to quarantine with reasons.

    A supplier id seen twice in a run keeps its first row (by file, then line); later ones are
    quarantined as duplicates. Rerunning it revalidates only rows still ``staged``.

    :param warehouse: the warehouse hook
    :param run_id: the Airflow run id
    """
    t = staged_rows
    with warehouse.begin() as conn:
        seen = {
            json.loads(r.clean_row)["supplier_id"]
            for r in conn.execute(select(t.c.clean_row).where(t.c.run_id == run_id, t.c.clean_row.is_not(None)))
        }
        pending = conn.execute(
            select(t.c.source_file, t.c.line_number, t.c.raw_row)
            .where(t.c.run_id == run_id, t.c.status == "staged")
            .order_by(t.c.source_file, t.c.line_number)
        ).all()
        valid, bad = [], []
        categories: Counter[str] = Counter()
        for row in pending:
            clean, errors = validate_row(json.loads(row.raw_row))
            if clean is not None and clean["supplier_id"] in seen:
                errors = [RowError("duplicate_supplier_id", "supplier_id", f"supplier_id {clean['supplier_id']!r} already in this run")]
                clean = None
            if clean is None:
                categories[errors[0].category] += 1
                bad.append(
                    Quarantined(row.source_file, row.line_number, row.raw_row, errors[0].category, "; ".join(e.detail for e in errors))
                )
                continue
            seen.add(clean["supplier_id"])
            valid.append(
                {"f": row.source_file, "l": row.line_number, "s": "valid", "clean": json.dumps(clean),
                 "pc": clean["postcode"], "cn": clean["company_number"]}
            )
        set_status(conn, run_id=run_id, updates=valid)
        quarantine_rows(conn, run_id=run_id, stage="validate", rows=bad)
    return {"rows_checked": len(pending), "rows_valid": len(valid), "rows_quarantined": len(bad), "by_category": dict(categories)}
