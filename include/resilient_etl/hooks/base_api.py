"""The shared request path of the API hooks: one pooled session, typed errors, rate-limit headers."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from resilient_etl import UI_FIELD_BEHAVIOUR
from resilient_etl.errors import (
    ApiAuthError,
    ApiBadResponseError,
    ApiClientError,
    ApiConnectionError,
    ApiError,
    ApiRateLimitError,
    ApiServerError,
    ApiTimeoutError,
)
from resilient_etl.resilience.retry import Retrier, RetryPolicy

if TYPE_CHECKING:
    from resilient_etl.resilience.ratelimit import QuotaPacer
    from resilient_etl.resilience.storage import PacingStore


@dataclass(frozen=True)
class RateLimitStatus:
    """The ``X-Ratelimit-*`` headers of the last response (Companies House sends them on every one)."""

    limit: int | None
    remain: int | None
    reset_at: float | None
    window: str | None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_rate_limit(headers: Any) -> RateLimitStatus | None:
    """Return the rate-limit status carried by ``headers``, or None when there is none."""
    if "X-Ratelimit-Limit" not in headers and "X-Ratelimit-Remain" not in headers:
        return None
    reset = _int_or_none(headers.get("X-Ratelimit-Reset"))
    return RateLimitStatus(
        limit=_int_or_none(headers.get("X-Ratelimit-Limit")),
        # The Document API spells it "Remaining"; accept both.
        remain=_int_or_none(headers.get("X-Ratelimit-Remain", headers.get("X-Ratelimit-Remaining"))),
        reset_at=float(reset) if reset is not None else None,
        window=headers.get("X-Ratelimit-Window"),
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """
    Return the seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or None.

    :param value: the header value
    :param now: the current unix time (for HTTP dates); defaults to the clock
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_status(
    status: int, *, service: str, endpoint: str, headers: Any, now: float | None = None
) -> ApiError:
    """
    Return the typed error for a non-success HTTP status (a pure function: no I/O).

    :param status: the HTTP status code
    :param service: the API's name
    :param endpoint: the endpoint path that answered
    :param headers: the response headers (for Retry-After and X-Ratelimit-Reset)
    :param now: the current unix time, for HTTP-date Retry-After values
    """
    retry_after = parse_retry_after(headers.get("Retry-After"), now=now)
    common: dict[str, Any] = {"service": service, "endpoint": endpoint, "status_code": status, "retry_after": retry_after}
    message = f"{service} answered HTTP {status} on {endpoint}"
    if status == 429:
        limits = parse_rate_limit(headers)
        return ApiRateLimitError(message, reset_at=limits.reset_at if limits else None, **common)
    if status in (401, 403):
        return ApiAuthError(message, **common)
    if status == 408 or status >= 500:
        return ApiServerError(message, **common)
    return ApiClientError(message, **common)


class ApiHook(HttpHook):
    """
    Base of the API hooks: a pooled session, retries, optional quota pacing, typed errors.

    The session (and the connection lookup behind it) is built on first use, not in ``__init__``, and
    reused for every call, so a run of a thousand lookups keeps its TCP connections alive.

    :param conn_id: the Airflow connection id
    :param timeout: seconds to wait for connect and for each read
    :param retry_policy: how transient failures are retried (a default policy when omitted)
    :param pacing_store: where quota pacing slots are shared; None disables pacing
    """

    service: str = "api"

    def __init__(
        self,
        conn_id: str,
        *,
        timeout: float = 10.0,
        method: str = "GET",
        retry_policy: RetryPolicy | None = None,
        pacing_store: PacingStore | None = None,
    ) -> None:
        super().__init__(method=method, http_conn_id=conn_id)
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy(dependency=self.service)
        self.pacing_store = pacing_store
        self.pacer: QuotaPacer | None = None
        self._session: requests.Session | None = None
        self.last_rate_limit: RateLimitStatus | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form layout (the same data the provider info declares)."""
        behaviour = UI_FIELD_BEHAVIOUR[cls.conn_type]
        return {"hidden_fields": behaviour["hidden-fields"], "relabeling": behaviour["relabeling"], "placeholders": behaviour["placeholders"]}

    @property
    def session(self) -> requests.Session:
        """Return the pooled session, building it (and resolving the connection) on first use."""
        if self._session is None:
            self._session = self.get_conn()
            if self.pacing_store is not None:
                from resilient_etl.resilience.ratelimit import QuotaPacer, pacing_key

                conn = self.get_connection(self.http_conn_id)
                self.pacer = QuotaPacer(self.pacing_store, pacing_key(self.service, conn.password or conn.host or ""))
        return self._session

    def close(self) -> None:
        """Close the pooled session."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        allow_status: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """
        Send a request, retrying transient failures under the retry policy; return ``(status, JSON body)``.

        :param method: HTTP method
        :param endpoint: path below the connection's base URL
        :param allow_status: non-2xx statuses returned to the caller instead of raised (e.g. 404)
        :raises ApiError: a typed subclass for timeouts, dropped connections, error statuses and bodies
            that are not JSON, once the policy gives up (or at once for a permanent one)
        """
        self.session  # noqa: B018 - builds the pacer with the session, before the budget is set on it
        if self.pacer is not None:  # waiting for quota counts toward the same budget as retries
            self.pacer.deadline = time.time() + self.retry_policy.max_elapsed
        return Retrier(self.retry_policy, logger=self.log).call(
            self.request_once, method, endpoint, allow_status=allow_status, **kwargs
        )

    def request_once(
        self,
        method: str,
        endpoint: str,
        *,
        allow_status: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """Send one request (after its pacing slot, when pacing); see :meth:`request`."""
        session = self.session  # resolves the connection and base URL on first use
        url = self.url_from_endpoint(endpoint)
        if self.pacer is not None:
            self.pacer.before_request()
        try:
            response = session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise ApiTimeoutError(
                f"{self.service}: no response within {self.timeout}s on {endpoint}", service=self.service, endpoint=endpoint
            ) from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise ApiConnectionError(
                f"{self.service}: connection failed on {endpoint}: {type(exc).__name__}",
                service=self.service,
                endpoint=endpoint,
            ) from exc
        self.last_rate_limit = parse_rate_limit(response.headers) or self.last_rate_limit
        if self.pacer is not None:
            self.pacer.after_response(self.last_rate_limit)
        status = response.status_code
        if status >= 300 and status not in allow_status:
            error = error_for_status(status, service=self.service, endpoint=endpoint, headers=response.headers)
            if self.pacer is not None and isinstance(error, ApiRateLimitError):
                self.pacer.on_rate_limited(error)
            raise error
        try:
            return status, response.json()
        except ValueError as exc:
            raise ApiBadResponseError(
                f"{self.service}: HTTP {status} on {endpoint} with a body that is not JSON ({len(response.content)} bytes)",
                service=self.service,
                endpoint=endpoint,
                status_code=status,
            ) from exc

    def bad_shape(self, endpoint: str, what: str) -> ApiBadResponseError:
        """Return the error for a JSON body that lacks what the contract promises."""
        return ApiBadResponseError(f"{self.service}: unexpected body on {endpoint}: {what}", service=self.service, endpoint=endpoint)
