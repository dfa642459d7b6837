"""Operator re-enriching suppliers loaded as pending or from fallbacks while a breaker was open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resilient_etl.operators.enrich import ApiEnrichmentOperator
from resilient_etl.pipeline.backlog import reenrich_backlog

if TYPE_CHECKING:
    from resilient_etl.resilience.breaker_policy import BreakerPolicy


class ReenrichBacklogOperator(ApiEnrichmentOperator):
    """
    Re-enrich up to ``limit`` backlog suppliers once both breakers are closed.

    :param limit: suppliers per run
    :param postcodes_breaker_policy: the postcodes.io breaker
    :param companies_breaker_policy: the Companies House breaker
    :param postcodes_io_conn_id: the postcodes.io connection
    :param companies_house_conn_id: the Companies House connection
    """

    def __init__(
        self,
        *,
        limit: int = 500,
        postcodes_breaker_policy: BreakerPolicy | None = None,
        companies_breaker_policy: BreakerPolicy | None = None,
        postcodes_io_conn_id: str = "postcodes_io_default",
        companies_house_conn_id: str = "companies_house_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.limit = limit
        self.postcodes_breaker_policy = postcodes_breaker_policy
        self.companies_breaker_policy = companies_breaker_policy
        self.postcodes_io_conn_id = postcodes_io_conn_id
        self.companies_house_conn_id = companies_house_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from resilient_etl.hooks.companies_house import CompaniesHouseHook
        from resilient_etl.hooks.postcodes import PostcodesIoHook

        postcodes = PostcodesIoHook(self.postcodes_io_conn_id, timeout=self.timeout, retry_policy=self.api_retry_policy)
        companies = CompaniesHouseHook(self.companies_house_conn_id, timeout=self.timeout, retry_policy=self.api_retry_policy)
        try:
            return reenrich_backlog(
                self.warehouse,
                postcodes,
                companies,
                run_id=self.run_id(context),
                limit=self.limit,
                postcode_breaker=self.breaker(self.postcodes_breaker_policy),
                company_breaker=self.breaker(self.companies_breaker_policy),
            )
        finally:
            postcodes.close()
            companies.close()
