"""Parsing the odd shapes live API data has (CONTRACTS.md), without a network."""

from __future__ import annotations

import datetime as dt

from resilient_etl.pipeline.columns import company_columns, postcode_columns


def test_company_profile_with_string_day_month_and_old_sic() -> None:
    profile = {
        "company_name": "PYTHON LTD",
        "company_number": "02894655",
        "type": "ltd",
        "company_status": "dissolved",
        "date_of_creation": "1994-02-01",
        "sic_codes": ["7220"],
        "accounts": {"accounting_reference_date": {"day": "03", "month": "06"}, "last_accounts": {"type": "null"}},
        "registered_office_address": {"premises": "1", "address_line_1": "Road", "postal_code": "AB10 1AB"},
        "links": {"self": "/company/02894655"},
        "brand_new_field": {"ignored": True},
    }
    cols = company_columns(profile)
    assert cols["co_status"] == "dissolved"
    assert cols["co_incorporated_on"] == dt.date(1994, 2, 1)
    assert cols["co_sic_codes"] == "7220"
    assert cols["co_registered_office"] == "1, Road, AB10 1AB"


def test_charity_stub_without_status_date_or_address() -> None:
    cols = company_columns(
        {"company_name": "X", "company_number": "CE020555", "type": "charitable-incorporated-organisation", "can_file": True, "links": {}}
    )
    assert cols["co_status"] is None and cols["co_incorporated_on"] is None and cols["co_registered_office"] is None
    assert cols["co_type"] == "charitable-incorporated-organisation"


def test_bad_date_does_not_raise() -> None:
    assert company_columns({"date_of_creation": "unknown"})["co_incorporated_on"] is None


def test_postcode_without_grid_reference() -> None:
    cols = postcode_columns({"postcode": "JE2 4WD", "country": "Channel Islands", "latitude": None, "longitude": None, "region": None})
    assert cols == {"pc_country": "Channel Islands", "pc_region": None, "pc_admin_district": None, "pc_latitude": None, "pc_longitude": None}
    assert postcode_columns({"latitude": "57.1", "longitude": "-2.1"})["pc_latitude"] == 57.1
