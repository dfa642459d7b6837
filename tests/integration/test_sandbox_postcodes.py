"""The postcodes.io sandbox over real HTTP, against CONTRACTS.md part 1."""

from __future__ import annotations

import requests

from resilient_etl_devtools.sandbox.postcodes_app import INVALID_JSON, INVALID_QUERY, NOT_ARRAY, TOO_MANY_LOCATIONS, TOO_MANY_POSTCODES


def test_lookup_normalises_and_returns_the_envelope(clean_faults) -> None:
    url = clean_faults.postcodes.url
    for form in ("AB10%201AB", "ab101ab", "Ab10%20%20%201aB"):
        body = requests.get(f"{url}/postcodes/{form}", timeout=5).json()
        assert body["status"] == 200 and body["result"]["postcode"] == "AB10 1AB"
    assert requests.get(f"{url}/postcodes/JE2%204WD", timeout=5).json()["result"]["latitude"] is None


def test_lookup_errors(clean_faults) -> None:
    url = clean_faults.postcodes.url
    r = requests.get(f"{url}/postcodes/FOO", timeout=5)
    assert (r.status_code, r.json()) == (404, {"status": 404, "error": "Invalid postcode"})
    r = requests.get(f"{url}/postcodes/SW1A+2AA", timeout=5)
    assert r.json()["error"] == "Invalid postcode"  # + is not a space
    r = requests.get(f"{url}/postcodes/ID1%201QE", timeout=5)
    assert (r.status_code, r.json()) == (404, {"status": 404, "error": "Postcode not found"})
    r = requests.get(f"{url}/postcodes/AB1%200AA", timeout=5)
    assert r.status_code == 404 and r.json()["terminated"] == {
        "postcode": "AB1 0AA",
        "year_terminated": 1996,
        "month_terminated": 6,
        "longitude": -2.242851,
        "latitude": 57.101474,
    }
    r = requests.get(f"{url}/no/such/route", timeout=5)
    assert (r.status_code, r.json()) == (404, {"status": 404, "error": "Resource not found"})


def test_bulk_lookup_order_nulls_and_dropped_non_strings(clean_faults) -> None:
    r = requests.post(f"{clean_faults.postcodes.url}/postcodes", json={"postcodes": ["AB10 1AB", "zz9 9zz", 7, "nonsense"]}, timeout=5)
    result = r.json()["result"]
    assert [i["query"] for i in result] == ["AB10 1AB", "zz9 9zz", "nonsense"]
    assert result[0]["result"]["postcode"] == "AB10 1AB" and result[1]["result"] is None and result[2]["result"] is None


def test_bulk_limits_and_400_messages(clean_faults) -> None:
    url = f"{clean_faults.postcodes.url}/postcodes"
    ok = requests.post(url, json={"postcodes": ["AB10 1AB"] * 100}, timeout=5)
    assert ok.status_code == 200 and len(ok.json()["result"]) == 100
    cases = [
        ({"json": {"postcodes": ["AB10 1AB"] * 101}}, TOO_MANY_POSTCODES),
        ({"json": {"geolocations": [{"longitude": -2.1, "latitude": 57.1}] * 101}}, TOO_MANY_LOCATIONS),
        ({"json": {"postcodes": "AB10 1AB"}}, NOT_ARRAY),
        ({"json": {"something": []}}, INVALID_QUERY),
        ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, INVALID_JSON),
        ({"data": '{"postcodes": ["AB10 1AB"]}', "headers": {"Content-Type": "text/plain"}}, INVALID_QUERY),
    ]
    for kwargs, message in cases:
        r = requests.post(url, timeout=5, **kwargs)
        assert (r.status_code, r.json()) == (400, {"status": 400, "error": message}), kwargs


def test_bulk_filter(clean_faults) -> None:
    r = requests.post(f"{clean_faults.postcodes.url}/postcodes?filter=postcode,%20Longitude,bogus", json={"postcodes": ["AB10 1AB", "X"]}, timeout=5)
    assert r.json()["result"][0]["result"] == {"postcode": "AB10 1AB", "longitude": -2.096916}
    assert r.json()["result"][1]["result"] is None


def test_validate_terminated_outcode_and_search(clean_faults) -> None:
    url = clean_faults.postcodes.url
    assert requests.get(f"{url}/postcodes/AB101AB/validate", timeout=5).json() == {"status": 200, "result": True}
    assert requests.get(f"{url}/postcodes/AB10AA/validate", timeout=5).json()["result"] is False
    assert requests.get(f"{url}/terminated_postcodes/AB10AA", timeout=5).json()["result"]["year_terminated"] == 1996
    assert requests.get(f"{url}/terminated_postcodes/AB101AB", timeout=5).json()["error"] == "Terminated postcode not found"
    assert requests.get(f"{url}/outcodes/ab10", timeout=5).json()["result"]["outcode"] == "AB10"
    assert requests.get(f"{url}/outcodes/ZZ1", timeout=5).json() == {"status": 404, "error": "Outcode not found"}
    assert requests.get(f"{url}/postcodes?q=AB10%201", timeout=5).json()["result"][0]["postcode"].startswith("AB10 1")
    assert requests.get(f"{url}/postcodes?q=ZZ", timeout=5).json()["result"] is None
    assert requests.get(f"{url}/postcodes", timeout=5).json()["status"] == 400


def test_a_scale_sandbox_serves_synthetic_postcodes_and_a_larger_register(tmp_path) -> None:
    """bench/e2e.py's sandbox: a drop of mostly distinct postcodes and companies, all of them answered."""
    import csv

    from resilient_etl.hooks.identifiers import compact_postcode, is_valid_postcode
    from resilient_etl_devtools.sandbox.data import live_postcodes, write_sample_csv
    from resilient_etl_devtools.sandbox.server import Sandbox

    drop = write_sample_csv(tmp_path / "d.csv", rows=3000, dirty_share=0, companies=3000, synthetic_postcodes=3000)
    with drop.path.open(newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    postcodes = {compact_postcode(r["postcode"]) for r in records}
    synthetic = postcodes - set(live_postcodes())
    assert len({r["company_number"].zfill(8) for r in records}) > 2900 and len(synthetic) > 900
    assert all(is_valid_postcode(p) for p in synthetic)
    with Sandbox(companies_count=3000, synthetic_postcodes=3000) as sb:
        asked = sorted(synthetic)[:100]
        result = requests.post(f"{sb.postcodes.url}/postcodes", json={"postcodes": asked}, timeout=5).json()["result"]
        assert all(r["result"] is not None and compact_postcode(r["result"]["postcode"]) == r["query"] for r in result)
        last = records[-1]["company_number"].zfill(8)
        r = requests.get(f"{sb.companies.url}/company/{last}", auth=("sandbox-key", ""), timeout=5)
        assert r.status_code == 200 and r.json()["company_number"] == last
