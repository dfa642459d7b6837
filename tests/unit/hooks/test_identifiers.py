from __future__ import annotations

import json
from pathlib import Path

import pytest

from resilient_etl.hooks.identifiers import is_valid_postcode, normalise_company_number, normalise_postcode

VECTORS = Path(__file__).resolve().parents[2] / "data"


@pytest.mark.parametrize("case", json.loads((VECTORS / "normalisation.json").read_text())["tests"])
def test_postcode_normalisation_matches_postcodes_io_vectors(case: dict) -> None:
    assert normalise_postcode(case["base"]) == case["expected"]


@pytest.mark.parametrize("case", json.loads((VECTORS / "validation.json").read_text())["tests"])
def test_postcode_validation_matches_postcodes_io_vectors(case: dict) -> None:
    assert is_valid_postcode(case["base"]) is case["expected"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("445790", "00445790"),
        (" sc090312 ", "SC090312"),
        ("OC 303675", "OC303675"),
        ("00445790", "00445790"),
        ("12-34-567-89", None),
        ("AB12345678", None),
        ("", None),
        (None, None),
    ],
)
def test_company_number_normalisation(raw: str | None, expected: str | None) -> None:
    assert normalise_company_number(raw) == expected


def test_plus_is_not_a_space_and_gir_is_rejected() -> None:
    assert normalise_postcode("SW1A+2AA") is None
    assert normalise_postcode("GIR 0AA") is None
