"""The hooks against the sandboxes over real HTTP, including every injected fault."""

from __future__ import annotations

import pytest
import requests

from resilient_etl.config import RetryPolicy
from resilient_etl.exceptions import (
    ApiAuthError,
    ApiBadResponseError,
    ApiConnectionError,
    ApiRateLimitError,
    ApiServerError,
    ApiTimeoutError,
    InvalidIdentifierError,
)
from resilient_etl.hooks.companies_house import CompaniesHouseHook
from resilient_etl.hooks.postcodes import PostcodesIoHook
from resilient_etl_devtools.sandbox.data import company_register, live_postcodes

ONCE = RetryPolicy(dependency="test", max_attempts=1)


def _fault(app, endpoint: str, **spec) -> None:
    requests.put(f"{app.url}/__sandbox/faults/{endpoint}", json=spec, timeout=5).raise_for_status()


def test_postcode_lookup_and_bulk(api_connections) -> None:
    hook = PostcodesIoHook()
    assert hook.lookup("ab101ab")["postcode"] == "AB10 1AB"
    assert hook.lookup("ZZ9 9ZZ") is None
    assert hook.lookup("AB1 0AA") is None  # terminated
    assert hook.lookup("not a postcode") is None
    wanted = [r["postcode"] for r in list(live_postcodes().values())[:250]]
    before = api_connections.postcodes.registry.snapshot()["requests"].get("bulk", 0)
    result = hook.bulk_lookup([p.lower().replace(" ", "") for p in wanted] + ["ZZ9 9ZZ", "bogus", wanted[0]])
    assert api_connections.postcodes.registry.snapshot()["requests"]["bulk"] - before == 3  # 251 distinct / 100
    assert set(result) == set(wanted) | {"ZZ9 9ZZ"}
    assert result["ZZ9 9ZZ"] is None and all(result[p]["postcode"] == p for p in wanted)


def test_company_lookup_search_and_404(api_connections) -> None:
    hook = CompaniesHouseHook()
    number = next(iter(company_register().profiles))
    assert hook.get_company(number.lstrip("0") if number.isdigit() else number)["company_number"] == number
    assert hook.get_company("99999999") is None
    assert hook.get_company("99999998") is None  # the other 404 body shape
    with pytest.raises(InvalidIdentifierError) as info:
        hook.get_company("123456789")
    assert info.value.field == "company_number"
    assert hook.search("granite", items_per_page=5)["items"]
    assert hook.last_rate_limit is not None and hook.last_rate_limit.limit == 100_000
    assert hook.test_connection()[0] is True


@pytest.mark.parametrize(
    ("spec", "error", "status"),
    [
        ({"status": 503}, ApiServerError, 503),
        ({"status": 502}, ApiServerError, 502),
        ({"status": 429, "retry_after": 3}, ApiRateLimitError, 429),
        ({"drop": True}, ApiConnectionError, None),
        ({"truncate": True}, ApiBadResponseError, 200),
        ({"hang_seconds": 2.0}, ApiTimeoutError, None),
    ],
)
def test_faults_raise_typed_errors(api_connections, spec: dict, error: type, status: int | None) -> None:
    _fault(api_connections.companies, "company", **spec)
    _fault(api_connections.postcodes, "bulk", **spec)
    number = next(iter(company_register().profiles))
    calls = (
        lambda: CompaniesHouseHook(timeout=0.5, retry_policy=ONCE).get_company(number),
        lambda: PostcodesIoHook(timeout=0.5, retry_policy=ONCE).bulk_lookup(["AB10 1AB"]),
    )
    for call in calls:
        with pytest.raises(error) as info:
            call()
        assert info.value.status_code == status
        assert info.value.transient is True
    if spec.get("retry_after"):
        assert info.value.retry_after == 3.0


def test_burst_heals(api_connections) -> None:
    _fault(api_connections.postcodes, "lookup", status=503, count=2)
    hook = PostcodesIoHook(retry_policy=ONCE)
    for _ in range(2):
        with pytest.raises(ApiServerError):
            hook.lookup("AB10 1AB")
    assert hook.lookup("AB10 1AB")["postcode"] == "AB10 1AB"


def test_wrong_key_is_auth_error_and_the_key_never_leaks(api_connections, monkeypatch, logs) -> None:
    secret = "live-key-9f8e7d6c5b4a"
    from resilient_etl_devtools.localenv import connection_env

    env = connection_env(postcodes_url="", companies_url=api_connections.companies.url, api_key=secret, warehouse={})
    monkeypatch.setenv("AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT", env["AIRFLOW_CONN_COMPANIES_HOUSE_DEFAULT"])
    hook = CompaniesHouseHook()
    with pytest.raises(ApiAuthError) as info:
        hook.get_company("00445790")
    assert info.value.status_code == 401 and info.value.transient is False
    ok, message = hook.test_connection()
    assert ok is False
    for text in (str(info.value), repr(info.value), message, logs()):
        assert secret not in text


def test_connection_refused_is_typed(monkeypatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_POSTCODES_IO_DEFAULT", f'{{"conn_type": "postcodes_io", "host": "http://127.0.0.1:{port}"}}')
    with pytest.raises(ApiConnectionError):
        PostcodesIoHook(retry_policy=ONCE).lookup("AB10 1AB")
    assert PostcodesIoHook(retry_policy=ONCE).test_connection()[0] is False
