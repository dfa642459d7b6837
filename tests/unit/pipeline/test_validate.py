from __future__ import annotations

from resilient_etl.pipeline.validate import EXTRA_FIELDS_KEY, control_character, validate_row

GOOD = {
    "supplier_id": "SUP-1",
    "company_number": "445790",
    "company_name": "Tesco Plc",
    "address_line_1": "1 High St",
    "town": "Welwyn",
    "postcode": "ab101ab",
    "annual_spend_gbp": "1,234.5",
    "onboarded_on": "2024-02-29",
}


def test_good_row_is_normalised() -> None:
    clean, errors = validate_row(GOOD)
    assert errors == []
    assert clean == {
        "supplier_id": "SUP-1",
        "company_number": "00445790",
        "company_name": "Tesco Plc",
        "address_line_1": "1 High St",
        "town": "Welwyn",
        "postcode": "AB10 1AB",
        "annual_spend_gbp": "1234.50",
        "onboarded_on": "2024-02-29",
    }


def test_optional_fields_may_be_blank() -> None:
    clean, errors = validate_row({**GOOD, "address_line_1": "", "town": " ", "annual_spend_gbp": ""})
    assert errors == [] and clean is not None
    assert clean["address_line_1"] is None and clean["annual_spend_gbp"] is None


def test_each_rule_names_its_field() -> None:
    cases = {
        "postcode": ("ABC 123", "invalid_postcode"),
        "company_number": ("12-34", "invalid_company_number"),
        "annual_spend_gbp": ("twelve", "invalid_number"),
        "onboarded_on": ("2024-13-45", "invalid_date"),
        "company_name": ("", "missing_field"),
        "supplier_id": ("x" * 65, "field_too_long"),
    }
    for field, (value, category) in cases.items():
        clean, errors = validate_row({**GOOD, field: value})
        assert clean is None, field
        assert [(e.category, e.field) for e in errors] == [(category, field)]
        assert field in errors[0].detail


def test_all_errors_of_a_row_are_reported() -> None:
    clean, errors = validate_row({**GOOD, "postcode": "", "onboarded_on": "soon", "annual_spend_gbp": "-5"})
    assert clean is None
    assert {e.field for e in errors} == {"postcode", "onboarded_on", "annual_spend_gbp"}


def test_extra_fields_and_missing_trailing_fields_are_malformed() -> None:
    _, errors = validate_row({**GOOD, EXTRA_FIELDS_KEY: ["x", "y"]})
    assert errors[0].category == "malformed_row"
    _, errors = validate_row({**GOOD, "onboarded_on": None})
    assert [e.category for e in errors] == ["missing_field"]


def test_control_character_finds_exactly_the_c0_c1_and_del_controls_but_tab_and_line_breaks() -> None:
    controls = {c for c in range(0x20) if chr(c) not in "\t\n\r"} | {0x7F} | set(range(0x80, 0xA0))
    for code in range(0x250):
        found = control_character(f"ab{chr(code)}c")
        assert found == ((3, f"U+{code:04X}") if code in controls else None), hex(code)
    assert control_character("Line one\nLine two\tTabbed\r") is None
    assert control_character("\x00") == (1, "U+0000")
