"""Hook for the Companies House Public Data API: company profiles and search, HTTP Basic key auth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from requests.auth import HTTPBasicAuth

from resilient_etl.config.models import RetryPolicy
from resilient_etl.exceptions import InvalidIdentifierError
from resilient_etl.hooks.base_api import ApiHook
from resilient_etl.hooks.identifiers import normalise_company_number

if TYPE_CHECKING:
    from resilient_etl.resilience.breaker import SharedCircuitBreaker
    from resilient_etl.resilience.budget import RetryBudget
    from resilient_etl.resilience.ratelimit import PacingStore


class CompaniesHouseHook(ApiHook):
    """
    Read company records from Companies House (or the sandbox).

    The connection's host is the base URL and its password the API key, sent as HTTP Basic
    ``key:`` (the key as user name, an empty password). Airflow masks the password in logs.

    :param companies_house_conn_id: the Airflow connection id
    :param timeout: seconds to wait for each request
    :param retry_policy: how transient failures (5xx, timeouts, 429 until the quota resets) are retried
    :param pacing_store: share quota pacing through this store (from the ``X-Ratelimit-*`` headers);
        None sends as fast as answers come
    :param burst_reserve: burst each window down to this many requests, then pace them; None spreads
        each window evenly
    :param breaker: the circuit breaker (default: the shared ``companies_house`` breaker; see :class:`ApiHook`)
    """

    conn_name_attr = "companies_house_conn_id"
    default_conn_name = "companies_house_default"
    conn_type = "companies_house"
    hook_name = "Companies House"
    service = "companies_house"

    def __init__(
        self,
        companies_house_conn_id: str = default_conn_name,
        *,
        timeout: float = 10.0,
        retry_policy: RetryPolicy | None = None,
        pacing_store: PacingStore | None = None,
        burst_reserve: int | None = None,
        breaker: SharedCircuitBreaker | bool | None = None,
        retry_budget: RetryBudget | bool | None = None,
    ) -> None:
        super().__init__(
            companies_house_conn_id,
            timeout=timeout,
            retry_policy=retry_policy,
            pacing_store=pacing_store,
            burst_reserve=burst_reserve,
            breaker=breaker,
            retry_budget=retry_budget,
        )
        self.companies_house_conn_id = companies_house_conn_id

    def _extract_auth(self, connection: Any) -> HTTPBasicAuth:
        # The key is the Basic user name with an empty password: base64("key:").
        return HTTPBasicAuth(connection.password or connection.login or "", "")

    def get_company(self, company_number: str) -> dict[str, Any] | None:
        """
        Return the company profile, or None when Companies House has no such company (404).

        :param company_number: the number in any case, spacing or padding (``445790`` is ``00445790``)
        :raises InvalidIdentifierError: the number cannot be a Companies House number (never sent:
            the API answers malformed numbers with a 500)
        """
        number = normalise_company_number(company_number)
        if number is None:
            raise InvalidIdentifierError(f"malformed company number {company_number!r}", field="company_number", value=company_number)
        endpoint = f"company/{number}"
        # Both observed 404 bodies (errors[] and timestamp/message) mean the same: branch on status only.
        status, body = self.request("GET", endpoint, allow_status=(404,))
        if status == 404:
            return None
        if not isinstance(body, dict) or not body.get("company_number"):
            raise self.bad_shape(endpoint, "no company_number")
        return body

    def search(self, query: str, *, items_per_page: int = 20, start_index: int = 0) -> dict[str, Any]:
        """
        Search companies by name; return the search envelope (``items`` is ``[]`` on no hits).

        :param query: the name to search for
        :param items_per_page: page size (Companies House caps it at 100)
        :param start_index: offset of the first item
        """
        status, body = self.request(
            "GET", "search/companies", params={"q": query, "items_per_page": min(items_per_page, 100), "start_index": start_index}
        )
        if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
            raise self.bad_shape("search/companies", "no items list")
        body.setdefault("items", [])
        return body

    def test_connection(self) -> tuple[bool, str]:
        """Check the key is accepted with a one-item search."""
        try:
            self.search("test", items_per_page=1)
        except Exception as exc:  # a connection test reports any failure instead of raising
            return False, f"{type(exc).__name__}: {exc}"
        remain = self.last_rate_limit.remain if self.last_rate_limit else None
        return True, f"Companies House accepted the key (rate limit remaining: {remain})"
