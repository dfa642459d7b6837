"""Operator re-enriching suppliers loaded as pending or from fallbacks while a breaker was open."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resilient_etl.operators.enrich import ApiEnrichmentOperator, ApiSettings
from resilient_etl.pipeline.backlog import reenrich_backlog

if TYPE_CHECKING:
    from resilient_etl.hooks.companies_house import CompaniesHouseHook
    from resilient_etl.hooks.postcodes import PostcodesIoHook


class ReenrichBacklogOperator(ApiEnrichmentOperator):
    """
    Re-enrich up to ``limit`` backlog suppliers once both breakers are closed.

    Each API is called with its own connection, timeout, retry policy and breaker.

    :param limit: suppliers per run
    :param postcodes_io: how postcodes.io is called
    :param companies_house: how Companies House is called
    """

    def __init__(self, *, limit: int = 500, postcodes_io: ApiSettings, companies_house: ApiSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit
        self.postcodes_io = postcodes_io
        self.companies_house = companies_house

    def hooks(self) -> tuple[PostcodesIoHook, CompaniesHouseHook]:
        """Build the two API hooks, each from its own settings."""
        from resilient_etl.hooks.companies_house import CompaniesHouseHook
        from resilient_etl.hooks.postcodes import PostcodesIoHook

        pc, ch = self.postcodes_io, self.companies_house
        return (
            PostcodesIoHook(pc.conn_id, timeout=pc.timeout, retry_policy=pc.retry_policy, breaker=self.breaker(pc.breaker_policy)),
            CompaniesHouseHook(ch.conn_id, timeout=ch.timeout, retry_policy=ch.retry_policy, breaker=self.breaker(ch.breaker_policy)),
        )

    def execute(self, context: Any) -> dict[str, Any]:
        from resilient_etl.pipeline.overrides import enrichment_suspension

        with self.warehouse.begin() as conn:
            suspension = enrichment_suspension(conn)
        if suspension is not None:
            self.log.warning("Backlog left for later: live enrichment is suspended by override #%s (%s)", suspension.id, suspension.reason)
            return {"skipped": "live enrichment suspended", "override": suspension.id}
        postcodes, companies = self.hooks()
        try:
            return reenrich_backlog(self.warehouse, postcodes, companies, run_id=self.run_id(context), limit=self.limit)
        finally:
            postcodes.close()
            companies.close()
