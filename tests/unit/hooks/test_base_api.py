"""Typed-error decisions as pure functions: no network, no sleeping."""

from __future__ import annotations

import pytest
from requests.structures import CaseInsensitiveDict

from resilient_etl.exceptions import ApiAuthError, ApiClientError, ApiRateLimitError, ApiServerError, Category
from resilient_etl.hooks.base_api import error_for_status, parse_retry_after
from resilient_etl.resilience.ratelimit import parse_rate_limit


def _h(**headers: str) -> CaseInsensitiveDict:
    return CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize(
    ("status", "cls", "transient"),
    [
        (500, ApiServerError, True),
        (502, ApiServerError, True),
        (503, ApiServerError, True),
        (408, ApiServerError, True),
        (429, ApiRateLimitError, True),
        (401, ApiAuthError, False),
        (403, ApiAuthError, False),
        (400, ApiClientError, False),
        (422, ApiClientError, False),
    ],
)
def test_status_maps_to_typed_error(status: int, cls: type, transient: bool) -> None:
    err = error_for_status(status, service="companies_house", endpoint="company/00000001", headers=_h())
    assert type(err) is cls
    assert err.status_code == status and err.transient is transient
    assert err.service == "companies_house" and err.endpoint == "company/00000001"


def test_rate_limit_error_carries_retry_after_and_reset() -> None:
    err = error_for_status(
        429,
        service="companies_house",
        endpoint="x",
        headers=_h(Retry_After="7", X_Ratelimit_Reset="1730107751", X_Ratelimit_Limit="600", X_Ratelimit_Remain="0"),
    )
    assert isinstance(err, ApiRateLimitError)
    assert err.retry_after == 7.0 and err.reset_at == 1730107751.0
    assert err.category is Category.RATE_LIMIT


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_rate_limit_headers_both_spellings() -> None:
    status = parse_rate_limit(_h(X_Ratelimit_Limit="600", X_Ratelimit_Remain="599", X_Ratelimit_Reset="17", X_Ratelimit_Window="5m"))
    assert (status.limit, status.remain, status.reset_at, status.window) == (600, 599, 17.0, "5m")
    assert parse_rate_limit(_h(X_Ratelimit_Limit="600", X_Ratelimit_Remaining="3")).remain == 3
    assert parse_rate_limit(_h(Content_Type="application/json")) is None


def test_the_session_reads_proxies_from_the_environment_once_not_per_request(monkeypatch) -> None:
    """requests merged them on every request: ~1 ms each in a worker's environment, a third of a local request."""
    import requests

    from resilient_etl.hooks.base_api import _settle_environment

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    session = requests.Session()
    _settle_environment(session, "https://api.company-information.service.gov.uk")
    assert session.proxies["https"] == "http://proxy.example:3128" and not session.trust_env
    calls = []
    monkeypatch.setattr(requests.sessions, "get_environ_proxies", lambda *a, **k: calls.append(a) or {})
    request = session.prepare_request(requests.Request("GET", "https://api.company-information.service.gov.uk/company/1"))
    settings = session.merge_environment_settings(request.url, {}, None, None, None)
    assert settings["proxies"]["https"] == "http://proxy.example:3128" and calls == []  # kept, and not read again
    bypassed = requests.Session()
    _settle_environment(bypassed, "https://internal.example")
    assert "https" not in bypassed.proxies  # NO_PROXY is honoured as requests would
