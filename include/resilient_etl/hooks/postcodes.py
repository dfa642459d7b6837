"""Hook for postcodes.io: single and bulk postcode lookups with typed errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from resilient_etl.config.models import RetryPolicy
from resilient_etl.hooks.base_api import ApiHook
from resilient_etl.hooks.identifiers import normalise_postcode

if TYPE_CHECKING:
    from resilient_etl.resilience.breaker import SharedCircuitBreaker
    from resilient_etl.resilience.budget import RetryBudget

BULK_LIMIT = 100


class PostcodesIoHook(ApiHook):
    """
    Look up UK postcodes on postcodes.io (or the sandbox).

    The connection's host is the base URL (``https://api.postcodes.io``); no credentials.

    :param postcodes_io_conn_id: the Airflow connection id
    :param timeout: seconds to wait for each request
    :param bulk_size: postcodes per bulk request (postcodes.io accepts at most 100)
    :param retry_policy: how transient failures are retried
    :param breaker: the circuit breaker (default: the shared ``postcodes_io`` breaker; see :class:`ApiHook`)
    """

    conn_name_attr = "postcodes_io_conn_id"
    default_conn_name = "postcodes_io_default"
    conn_type = "postcodes_io"
    hook_name = "postcodes.io"
    service = "postcodes_io"

    def __init__(
        self,
        postcodes_io_conn_id: str = default_conn_name,
        *,
        timeout: float = 10.0,
        bulk_size: int = BULK_LIMIT,
        retry_policy: RetryPolicy | None = None,
        breaker: SharedCircuitBreaker | bool | None = None,
        retry_budget: RetryBudget | bool | None = None,
    ) -> None:
        if not 1 <= bulk_size <= BULK_LIMIT:
            raise ValueError(f"bulk_size must be between 1 and {BULK_LIMIT}, got {bulk_size}")
        super().__init__(postcodes_io_conn_id, timeout=timeout, retry_policy=retry_policy, breaker=breaker, retry_budget=retry_budget)
        self.postcodes_io_conn_id = postcodes_io_conn_id
        self.bulk_size = bulk_size

    def lookup(self, postcode: str) -> dict[str, Any] | None:
        """
        Return the postcode's result object, or None when it is malformed, unknown or terminated.

        :param postcode: a postcode in any case and spacing
        """
        normalised = normalise_postcode(postcode)
        if normalised is None:
            return None
        endpoint = f"postcodes/{quote(normalised)}"
        status, body = self.request("GET", endpoint, allow_status=(404,))
        if status == 404:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
            raise self.bad_shape(endpoint, "no result object")
        result: dict[str, Any] = body["result"]
        return result

    def bulk_lookup(self, postcodes: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """
        Look postcodes up in batches of ``bulk_size``.

        :param postcodes: postcodes in any case and spacing; duplicates are sent once
        :return: ``{normalised postcode: result or None}``; malformed inputs are left out (they have
            no normalised form and are never sent)
        """
        wanted = sorted({n for n in (normalise_postcode(p) for p in postcodes) if n})
        results: dict[str, dict[str, Any] | None] = {}
        for start in range(0, len(wanted), self.bulk_size):
            results.update(self.bulk_lookup_batch(wanted[start : start + self.bulk_size]))
        return results

    def bulk_lookup_batch(self, batch: list[str]) -> dict[str, dict[str, Any] | None]:
        """
        Send one bulk request of at most ``bulk_size`` normalised postcodes.

        :param batch: normalised postcodes
        """
        status, body = self.request("POST", "postcodes", json={"postcodes": batch})
        items = body.get("result") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise self.bad_shape("postcodes", "no result list")
        out: dict[str, dict[str, Any] | None] = {pc: None for pc in batch}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("query"), str):
                raise self.bad_shape("postcodes", "a bulk item without its query")
            key = normalise_postcode(item["query"])
            if key is not None:
                out[key] = item.get("result") if isinstance(item.get("result"), dict) else None
        return out

    def test_connection(self) -> tuple[bool, str]:
        """Check the API answers its ping."""
        try:
            status, body = self.request("GET", "ping")
        except Exception as exc:  # a connection test reports any failure instead of raising
            return False, f"{type(exc).__name__}: {exc}"
        return (True, "postcodes.io answered") if status == 200 else (False, f"HTTP {status}: {body}")
