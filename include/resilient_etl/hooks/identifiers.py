"""Normalise and validate the identifiers the pipeline joins on (postcodes, company numbers)."""

from __future__ import annotations

import re

# postcodes.io validates with the npm ``postcode`` package: format only, any internal whitespace.
_POSTCODE_RE = re.compile(r"^[a-z]{1,2}\d[a-z\d]?\s*\d[a-z]{2}$", re.IGNORECASE)
_COMPANY_NUMBER_RE = re.compile(r"^[A-Z0-9]{8}$")


def is_valid_postcode(value: str | None) -> bool:
    """Return whether ``value`` has the shape of a UK postcode (format only, as postcodes.io checks)."""
    return value is not None and bool(_POSTCODE_RE.match(value.strip()))


def compact_postcode(value: str) -> str:
    """Return the storage key of a postcode: upper case, all whitespace removed."""
    return re.sub(r"\s+", "", value).upper()


def normalise_postcode(value: str | None) -> str | None:
    """
    Return the canonical spaced form (``"NE69 7AW"``) of a postcode, or None when it is not one.

    :param value: a postcode in any case and spacing, e.g. ``"ne697aw"``
    """
    if not is_valid_postcode(value):
        return None
    compact = compact_postcode(value)  # type: ignore[arg-type]
    return f"{compact[:-3]} {compact[-3:]}"


def normalise_company_number(value: str | None) -> str | None:
    """
    Return an 8-character Companies House number, or None when ``value`` cannot be one.

    Trims, upper-cases, removes spaces and left-pads an all-digit input with zeros (``445790`` ->
    ``00445790``). Anything else that is not ``[A-Z0-9]{8}`` is rejected before it reaches the API,
    which answers a malformed number with a 500.

    :param value: the company number as typed in the source file
    """
    if value is None:
        return None
    candidate = re.sub(r"\s+", "", value).upper()
    if candidate.isdigit() and len(candidate) < 8:
        candidate = candidate.zfill(8)
    return candidate if _COMPANY_NUMBER_RE.match(candidate) else None
