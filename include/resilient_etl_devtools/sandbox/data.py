"""
Sandbox data: real postcodes.io result objects and a deterministic register of companies.

The postcode records are the derived ONSPD seed of postcodes.io (4,237 live, 3,811 terminated), shipped
gzipped. Companies are generated from a seed, so the sample CSV and the Companies House sandbox agree.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from resilient_etl.hooks.identifiers import compact_postcode
from resilient_etl.pipeline.validate import CSV_COLUMNS

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_SEED = 20261126
DEFAULT_COMPANY_COUNT = 1500


def _read_jsonl_gz(name: str) -> list[dict[str, Any]]:
    with gzip.open(DATA_DIR / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@lru_cache(maxsize=1)
def live_postcodes() -> dict[str, dict[str, Any]]:
    """Return live postcode result objects keyed by compact postcode (``AB101AB``)."""
    return {compact_postcode(r["postcode"]): r for r in _read_jsonl_gz("postcodes.jsonl.gz")}


_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the letters real inward codes use (no C, I, K, M, O, V)


@lru_cache(maxsize=4)
def postcode_book(synthetic: int = 0) -> dict[str, dict[str, Any]]:
    """
    Return the live postcodes the sandbox serves: the real seed and, for scale benchmarks, ``synthetic`` more.

    A synthetic postcode is a real record (its area and coordinates) under a code the seed does not
    hold, AB10 to AB99 with a real-shaped inward code, so validation and enrichment treat it as any
    other; the seed alone has 4,237, too few for a run with mostly distinct postcodes at 100,000 rows.

    :param synthetic: how many synthetic postcodes to add (0: the real seed only)
    """
    real = live_postcodes()
    if not synthetic:
        return real
    book = dict(real)
    templates = sorted(real.values(), key=lambda r: r["postcode"])
    inward = [f"{d}{x}{y}" for d in range(10) for x in _INWARD_LETTERS for y in _INWARD_LETTERS]
    codes = (f"AB{district} {code}" for code in inward for district in range(10, 100))  # 360,000 candidates
    for n, code in enumerate(c for c in codes if compact_postcode(c) not in real):
        if n == synthetic:
            break
        outcode, incode = code.split()
        book[compact_postcode(code)] = {**templates[n % len(templates)], "postcode": code, "outcode": outcode, "incode": incode}
    else:
        raise ValueError(f"at most {len(book) - len(real)} synthetic postcodes, not {synthetic}")
    return book


@lru_cache(maxsize=1)
def terminated_postcodes() -> dict[str, dict[str, Any]]:
    """Return terminated postcode records keyed by compact postcode."""
    return {compact_postcode(r["postcode"]): r for r in _read_jsonl_gz("terminated_postcodes.jsonl.gz")}


@lru_cache(maxsize=1)
def outcodes() -> dict[str, dict[str, Any]]:
    """Return outcode result objects keyed by outcode."""
    rows = json.loads((DATA_DIR / "outcodes.json").read_text(encoding="utf-8"))
    items = rows.values() if isinstance(rows, dict) else rows
    return {r["outcode"].upper(): r for r in items}


_WORDS = [
    "Granite",
    "Harbour",
    "Northern",
    "Thistle",
    "Silver",
    "Dee",
    "Don",
    "Bridge",
    "Union",
    "Castle",
    "Highland",
    "Coastal",
    "Oak",
    "Beacon",
    "Crown",
    "Meadow",
    "Summit",
    "Atlas",
    "Pioneer",
    "Kestrel",
    "Osprey",
    "Heather",
    "Cairn",
    "Forth",
    "Clyde",
    "Marine",
    "Sterling",
    "Orchard",
    "Falcon",
    "Lighthouse",
]
_TRADES = [
    "Engineering",
    "Logistics",
    "Catering",
    "Consulting",
    "Fabrication",
    "Energy Services",
    "Supplies",
    "Software",
    "Haulage",
    "Construction",
    "Marine Services",
    "Print",
    "Facilities",
    "Electrical",
]
_SIC = ["09100", "33150", "41201", "43210", "46900", "49410", "52290", "56290", "62020", "70229", "71129", "82990"]
_STATUSES = [("active", 0.86), ("dissolved", 0.06), ("liquidation", 0.04), ("administration", 0.04)]


def _pick_weighted(rng: random.Random, choices: list[tuple[str, float]]) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _company_number(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return "SC" + f"{rng.randint(100000, 799999)}"
    if roll < 0.11:
        return "OC" + f"{rng.randint(300000, 449999)}"
    if roll < 0.12:
        return "NI" + f"{rng.randint(600000, 699999)}"
    return f"{rng.randint(100000, 16000000):08d}"


def _profile(rng: random.Random, number: str, postcodes: list[dict[str, Any]]) -> dict[str, Any]:
    llp = number.startswith("OC")
    name_core = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {rng.choice(_TRADES)}"
    company_type = "llp" if llp else rng.choices(["ltd", "plc", "private-limited-guarant-nsc"], [0.9, 0.04, 0.06])[0]
    suffix = {"llp": "LLP", "plc": "PLC"}.get(company_type, "LIMITED")
    status = _pick_weighted(rng, _STATUSES)
    created = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randint(0, 27_000))
    pc = rng.choice(postcodes)
    jurisdiction = {"SC": "scotland", "NI": "northern-ireland"}.get(number[:2], "england-wales")
    profile: dict[str, Any] = {
        "company_name": f"{name_core} {suffix}".upper(),
        "company_number": number,
        "company_status": status,
        "type": company_type,
        "jurisdiction": jurisdiction,
        "date_of_creation": created.isoformat(),
        "registered_office_address": {
            "address_line_1": f"{rng.randint(1, 250)} {rng.choice(_WORDS)} Street",
            "locality": "Aberdeen",
            "postal_code": pc["postcode"],
            "country": rng.choice(["Scotland", "United Kingdom"]),
        },
        "accounts": {
            # Live data sends day/month as zero-padded strings although the spec says integers.
            "accounting_reference_date": {"day": f"{rng.randint(1, 28):02d}", "month": f"{rng.randint(1, 12):02d}"},
            "last_accounts": {"type": rng.choice(["full", "micro-entity", "total-exemption-full", "null"])},
        },
        "has_charges": rng.random() < 0.2,
        "has_insolvency_history": status in ("liquidation", "administration"),
        "has_super_secure_pscs": False,
        "can_file": status == "active",
        "etag": f"{rng.getrandbits(160):040x}",
        "links": {"self": f"/company/{number}", "filing_history": f"/company/{number}/filing-history"},
    }
    if not llp:
        profile["sic_codes"] = rng.sample(_SIC, rng.choice([1, 1, 2]))
    if status == "dissolved":
        profile["date_of_cessation"] = (created + dt.timedelta(days=rng.randint(400, 9000))).isoformat()
        profile["can_file"] = False
    return profile


@dataclass(frozen=True)
class CompanyRegister:
    """The sandbox register: profiles by number, in generation order."""

    profiles: dict[str, dict[str, Any]]

    def search(self, query: str) -> list[dict[str, Any]]:
        """Return profiles whose name contains every word of ``query`` (case-insensitive)."""
        words = query.upper().split()
        return [p for p in self.profiles.values() if all(w in p["company_name"] for w in words)]


@lru_cache(maxsize=4)
def company_register(seed: int = DEFAULT_SEED, count: int = DEFAULT_COMPANY_COUNT) -> CompanyRegister:
    """
    Generate the deterministic company register.

    :param seed: random seed; the same seed always yields the same companies
    :param count: how many companies
    """
    rng = random.Random(seed)
    postcodes = sorted(live_postcodes().values(), key=lambda r: r["postcode"])
    profiles: dict[str, dict[str, Any]] = {}
    while len(profiles) < count:
        number = _company_number(rng)
        if number not in profiles:
            profiles[number] = _profile(rng, number, postcodes)
    # A charity stub as recorded live: no status, no creation date, no address.
    profiles["CE020555"] = {
        "company_name": "GRANITE CITY COMMUNITY TRUST",
        "company_number": "CE020555",
        "type": "charitable-incorporated-organisation",
        "can_file": True,
        "links": {"self": "/company/CE020555"},
    }
    return CompanyRegister(profiles)


@dataclass(frozen=True)
class SampleDrop:
    """What :func:`write_sample_csv` wrote: its path and how many rows are clean or dirty."""

    path: Path
    rows: int
    dirty_lines: dict[int, str]


PROGRESS_EVERY = 10_000  # rows between two progress reports of a large sample


def write_sample_csv(
    path: Path,
    *,
    rows: int = 1000,
    dirty_share: float = 0.03,
    seed: int = DEFAULT_SEED,
    id_prefix: str = "SUP",
    on_progress: Callable[[int, int], None] | None = None,
    companies: int = DEFAULT_COMPANY_COUNT,
    synthetic_postcodes: int = 0,
) -> SampleDrop:
    """
    Write a supplier CSV drop whose clean rows match the sandbox register and postcodes.

    :param path: the file to write
    :param rows: number of data rows
    :param dirty_share: share of rows made dirty (bad postcode, malformed company number, missing
        field, unparseable number or date, duplicate supplier id, unknown company or postcode)
    :param seed: random seed (the same seed writes the same file)
    :param id_prefix: the supplier ids' prefix (``SUP-000001`` …): another prefix, other suppliers
    :param on_progress: called with ``(rows made, rows)`` every :data:`PROGRESS_EVERY` rows
    :param companies: the size of the register the sandbox serves (rows cycle through its companies)
    :param synthetic_postcodes: the synthetic postcodes the sandbox serves (see :func:`postcode_book`)
    """
    rng = random.Random(seed + rows)
    register = company_register(count=companies)
    profiles = [p for p in register.profiles.values() if "registered_office_address" in p]
    book = postcode_book(synthetic_postcodes)
    postcodes = sorted(book)
    records: list[dict[str, str]] = []
    for i in range(rows):
        company = profiles[i % len(profiles)]
        pc = book[rng.choice(postcodes)]["postcode"]
        number = company["company_number"]
        # Real drops are typed by people: vary case, spacing and zero padding; all must normalise.
        if rng.random() < 0.1:
            pc = pc.replace(" ", "").lower()
        if rng.random() < 0.05 and number.isdigit():
            number = number.lstrip("0")
        records.append(
            {
                "supplier_id": f"{id_prefix}-{i + 1:06d}",
                "company_number": number,
                "company_name": company["company_name"].title(),
                "address_line_1": f"{rng.randint(1, 300)} {rng.choice(_WORDS)} Road",
                "town": "Aberdeen",
                "postcode": pc,
                "annual_spend_gbp": f"{rng.uniform(500, 2_500_000):.2f}",
                "onboarded_on": (dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 2000))).isoformat(),
            }
        )
        if on_progress is not None and (i + 1) % PROGRESS_EVERY == 0:
            on_progress(i + 1, rows)
    defects = [
        ("postcode", "ABC 123", "invalid postcode format"),
        ("postcode", "ZZ9 9ZZ", "unknown postcode"),
        ("postcode", "AB1 0AA", "terminated postcode"),
        ("company_number", "12-34-567-89", "malformed company number"),
        ("company_number", "99999999", "unknown company"),
        ("company_name", "", "missing company name"),
        ("postcode", "", "missing postcode"),
        ("annual_spend_gbp", "twelve thousand", "unparseable spend"),
        ("onboarded_on", "2024-13-45", "unparseable date"),
        ("supplier_id", None, "duplicate supplier id"),
    ]
    dirty_count = max(1, round(rows * dirty_share)) if dirty_share > 0 else 0
    dirty_indexes = sorted(rng.sample(range(1, rows), min(dirty_count, rows - 1)))
    dirty_lines: dict[int, str] = {}
    for n, index in enumerate(dirty_indexes):
        field, value, reason = defects[n % len(defects)]
        records[index][field] = records[index - 1]["supplier_id"] if value is None else value
        dirty_lines[index + 2] = reason  # +1 for the header, +1 for 1-based lines
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    return SampleDrop(path=path, rows=rows, dirty_lines=dirty_lines)
