"""The Companies House sandbox over real HTTP, against CONTRACTS.md part 2."""

from __future__ import annotations

import requests

from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY
from resilient_etl_devtools.sandbox.data import company_register
from resilient_etl_devtools.sandbox.server import Sandbox

AUTH = (DEFAULT_API_KEY, "")
HEADERS = ("X-Ratelimit-Limit", "X-Ratelimit-Remain", "X-Ratelimit-Reset", "X-Ratelimit-Window")


def test_auth_failures_and_headers_on_every_response(clean_faults) -> None:
    url = f"{clean_faults.companies.url}/company/00445790"
    r = requests.get(url, timeout=5)
    assert (r.status_code, r.json()) == (401, {"error": "Empty Authorization header", "type": "ch:service"})
    r = requests.get(url, auth=("wrong-key", ""), timeout=5)
    assert (r.status_code, r.json()) == (401, {"error": "Invalid Authorization", "type": "ch:service"})
    assert "WWW-Authenticate" in r.headers
    r = requests.get(url, headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"}, timeout=5)
    assert r.status_code == 401
    # base64 of the key without its trailing colon: the classic mistake
    import base64

    r = requests.get(url, headers={"Authorization": "Basic " + base64.b64encode(DEFAULT_API_KEY.encode()).decode()}, timeout=5)
    assert r.status_code == 401
    for response in (r, requests.get(url, auth=AUTH, timeout=5)):
        assert all(h in response.headers for h in HEADERS)


def test_profile_404_shapes_and_malformed_500(clean_faults) -> None:
    url = clean_faults.companies.url
    number, profile = next(iter(company_register().profiles.items()))
    r = requests.get(f"{url}/company/{number}", auth=AUTH, timeout=5)
    assert r.status_code == 200 and r.json() == profile and r.headers["ETag"] == profile["etag"]
    shapes = set()
    for unknown in ("99999999", "99999998", "99999997", "99999996", "99999995"):
        r = requests.get(f"{url}/company/{unknown}", auth=AUTH, timeout=5)
        assert r.status_code == 404
        shapes.add("errors" if "errors" in r.json() else "message")
    assert shapes == {"errors", "message"}
    r = requests.get(f"{url}/company/123456789", auth=AUTH, timeout=5)
    assert r.status_code == 500 and r.json()["error"] == "Internal server error"


def test_search_envelope(clean_faults) -> None:
    r = requests.get(f"{clean_faults.companies.url}/search/companies", params={"q": "granite", "items_per_page": 500}, auth=AUTH, timeout=5)
    body = r.json()
    assert body["kind"] == "search#companies" and body["items_per_page"] == 100 and body["page_number"] == 1
    assert body["items"] and all("GRANITE" in i["title"] for i in body["items"])
    empty = requests.get(f"{clean_faults.companies.url}/search/companies", params={"q": "zzzz"}, auth=AUTH, timeout=5).json()
    assert empty["items"] == [] and empty["total_results"] == 0


def test_quota_429_then_reset() -> None:
    with Sandbox(ch_limit=3, ch_window_seconds=2) as sb:  # >= 1 s left in the window whenever it opens
        url = f"{sb.companies.url}/search/companies?q=x"
        statuses = [requests.get(url, auth=AUTH, timeout=5) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert statuses[3].json() == {"error": "Too Many Requests", "type": "ch:service"}
        assert [r.headers["X-Ratelimit-Remain"] for r in statuses] == ["2", "1", "0", "0"]
        reset = int(statuses[0].headers["X-Ratelimit-Reset"])
        import time

        time.sleep(max(0.0, reset - time.time()) + 0.05)
        assert requests.get(url, auth=AUTH, timeout=5).status_code == 200
