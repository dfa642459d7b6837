"""Turn API result objects into warehouse columns, tolerating the odd shapes live data has."""

from __future__ import annotations

import datetime as dt
from typing import Any

_ADDRESS_PARTS = ("care_of", "po_box", "premises", "address_line_1", "address_line_2", "locality", "region", "postal_code", "country")


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def postcode_columns(result: dict[str, Any] | None) -> dict[str, Any]:
    """
    Return the supplier's postcode enrichment columns from a postcodes.io result object.

    :param result: the ``result`` object, or None when the postcode is unknown
    """
    result = result or {}
    return {
        "pc_country": result.get("country"),
        "pc_region": result.get("region"),
        "pc_admin_district": result.get("admin_district"),
        # Null for Channel Islands / Isle of Man (no grid reference).
        "pc_latitude": _float(result.get("latitude")),
        "pc_longitude": _float(result.get("longitude")),
    }


def company_columns(profile: dict[str, Any] | None) -> dict[str, Any]:
    """
    Return the supplier's company enrichment columns from a Companies House profile.

    Only ``company_name, company_number, type, can_file, links`` are guaranteed; charity and society
    stubs have no status, creation date or address; SIC codes are strings (4 digits on old records).

    :param profile: the company profile, or None when the company is unknown
    """
    profile = profile or {}
    address = profile.get("registered_office_address") or {}
    sic = profile.get("sic_codes") or []
    return {
        "co_name": profile.get("company_name"),
        "co_status": profile.get("company_status"),
        "co_type": profile.get("type"),
        "co_incorporated_on": _date(profile.get("date_of_creation")),
        "co_sic_codes": ",".join(str(code) for code in sic) or None,
        "co_registered_office": ", ".join(str(address[k]) for k in _ADDRESS_PARTS if address.get(k)) or None,
    }
