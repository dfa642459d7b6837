"""
The shared request path of the API hooks: one pooled session, typed errors, rate-limit headers,
retries, quota pacing and the API's shared circuit breaker.

Every hook call is guarded by its API's breaker unless the connection opts out (extra
``{"breaker": false}``), so a user's own task calling ``hook.lookup()`` is protected exactly as the
pipeline is: an open breaker raises :class:`~resilient_etl.exceptions.BreakerOpenError` (with the
time of its next probe) without sending anything.
"""

from __future__ import annotations

import email.utils
import time
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from resilient_etl import UI_FIELD_BEHAVIOUR
from resilient_etl.config.models import BreakerPolicy, RetryPolicy
from resilient_etl.exceptions import (
    ApiAuthError,
    ApiBadResponseError,
    ApiClientError,
    ApiConnectionError,
    ApiError,
    ApiRateLimitError,
    ApiServerError,
    ApiTimeoutError,
    ConfigError,
)
from resilient_etl.resilience.budget import RetryBudget
from resilient_etl.resilience.ratelimit import PacingStore, QuotaPacer, RateLimitStatus, pacing_key, parse_rate_limit
from resilient_etl.resilience.retry import Retrier

if TYPE_CHECKING:
    # pybreaker imports redis when it is installed: the breaker is built on first request, not at import
    from resilient_etl.resilience.breaker import SharedCircuitBreaker

BREAKER_EXTRA = "breaker"
BUDGET_EXTRA = "retry_budget"


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


def error_for_status(status: int, *, service: str, endpoint: str, headers: Any, now: float | None = None) -> ApiError:
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


def _settle_environment(session: requests.Session, url: str) -> None:
    """
    Read the proxy and CA-bundle variables once, for the session, instead of on every request.

    requests merges them from the environment per request (~1 ms in a worker whose environment holds
    Airflow's variables: a third of a request to a local API); they do not change during a task.
    """
    if not session.trust_env:
        return
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    session.trust_env = False  # also netrc: the hooks set their own auth


class ApiHook(HttpHook):
    """
    Base of the API hooks: a pooled session, retries, optional quota pacing, typed errors.

    The session (and the connection lookup behind it) is built on first use, not in ``__init__``, and
    reused for every call, so a run of a thousand lookups keeps its TCP connections alive.

    :param conn_id: the Airflow connection id
    :param timeout: seconds to wait for connect and for each read
    :param retry_policy: how transient failures are retried (a default policy when omitted)
    :param pacing_store: where quota pacing slots are shared; None disables pacing
    :param burst_reserve: pacing bursts each quota window down to this many requests, then paces them;
        None spreads each window evenly (:mod:`resilient_etl.resilience.ratelimit`)
    :param breaker: the circuit breaker guarding every call: None (default) builds the API's shared
        breaker from ``config/resilience.yaml`` on first use; ``False`` calls unguarded; or a breaker
        built by the caller. The connection's extra ``breaker`` overrides it: ``false`` opts out, a
        mapping overrides policy fields (``{"breaker": {"fail_max": 3}}``).
    :param retry_budget: the API's retry budget shared by every worker: None (default) builds it from
        ``retry_budget`` in the config (in the breaker's store) on first use; ``False`` retries on the
        policy alone; or a budget built by the caller. The connection's extra ``{"retry_budget": false}``
        turns it off.
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
        burst_reserve: int | None = None,
        breaker: SharedCircuitBreaker | bool | None = None,
        retry_budget: RetryBudget | bool | None = None,
    ) -> None:
        super().__init__(method=method, http_conn_id=conn_id)
        self.burst_reserve = burst_reserve
        self._budget_choice = retry_budget
        self._budget: RetryBudget | None = None
        self._budget_resolved = False
        self._breaker_choice = breaker
        self._breaker: SharedCircuitBreaker | None = None
        self._breaker_resolved = False
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
            # HttpHook sends unknown connection extras as headers; ours configures the breaker instead
            for extra in (BREAKER_EXTRA, BUDGET_EXTRA):
                self._session.headers.pop(extra, None)
            _settle_environment(self._session, self.base_url or "")
            if self.pacing_store is not None:
                conn = self.get_connection(self.http_conn_id)
                self.pacer = QuotaPacer(
                    self.pacing_store, pacing_key(self.service, conn.password or conn.host or ""), burst_reserve=self.burst_reserve
                )
        return self._session

    @property
    def breaker(self) -> SharedCircuitBreaker | None:
        """Return the circuit breaker guarding this hook's calls (built on first use), or None."""
        if not self._breaker_resolved:
            self._breaker = self._resolve_breaker()
            self._breaker_resolved = True
        return self._breaker

    def _resolve_breaker(self) -> SharedCircuitBreaker | None:
        extra = self.get_connection(self.http_conn_id).extra_dejson.get(BREAKER_EXTRA, True)
        choice = self._breaker_choice
        if extra is False or choice is False:
            return None
        if choice is not None and not isinstance(choice, bool):
            return choice
        from resilient_etl.hooks.shared_state import api_breaker

        overrides = extra if isinstance(extra, dict) else None
        breaker = api_breaker(self.service, policy=lambda policy: _override(policy, overrides, conn_id=self.http_conn_id) if overrides else policy)
        self.log.info(
            "%s calls are guarded by circuit breaker %s (%s)",
            self.service,
            breaker.policy.name,
            getattr(breaker.store, "description", type(breaker.store).__name__),
        )
        return breaker

    @property
    def retry_budget(self) -> RetryBudget | None:
        """Return the retry budget this hook's retries spend (built on first use), or None."""
        if not self._budget_resolved:
            self._budget = self._resolve_budget()
            self._budget_resolved = True
        return self._budget

    def _resolve_budget(self) -> RetryBudget | None:
        choice = self._budget_choice
        if choice is False or self.get_connection(self.http_conn_id).extra_dejson.get(BUDGET_EXTRA, True) is False:
            return None
        if choice is not None and not isinstance(choice, bool):
            return choice
        from resilient_etl.hooks.shared_state import api_retry_budget

        breaker = self.breaker
        return api_retry_budget(self.service, store=breaker.store if breaker is not None else None)

    def close(self) -> None:
        """Write the breaker's pending successes to the shared window; close the pooled session."""
        if self._breaker is not None:
            self._breaker.flush()
        if self._session is not None:
            self._session.close()
            self._session = None

    def request(self, method: str, endpoint: str, *, allow_status: tuple[int, ...] = (), **kwargs: Any) -> tuple[int, Any]:
        """
        Send a request through the breaker, retrying transient failures; return ``(status, JSON body)``.

        :param method: HTTP method
        :param endpoint: path below the connection's base URL
        :param allow_status: non-2xx statuses returned to the caller instead of raised (e.g. 404)
        :raises BreakerOpenError: the API's breaker is open (nothing was sent)
        :raises ApiError: a typed subclass for timeouts, dropped connections, error statuses and bodies
            that are not JSON, once the policy gives up (or at once for a permanent one)
        """
        self.session  # noqa: B018 - builds the pacer with the session, before the budget is set on it
        breaker, budget = self.breaker, self.retry_budget

        def retried() -> tuple[int, Any]:
            if self.pacer is not None:  # waiting for quota counts toward the same budget as retries
                self.pacer.deadline = time.time() + self.retry_policy.max_elapsed_seconds
            return Retrier(self.retry_policy, logger=self.log, budget=budget).call(
                self.request_once, method, endpoint, allow_status=allow_status, **kwargs
            )

        # one breaker call per retried request: a failure counts once its retries are spent
        return breaker.call(retried) if breaker is not None else retried()

    def request_once(self, method: str, endpoint: str, *, allow_status: tuple[int, ...] = (), **kwargs: Any) -> tuple[int, Any]:
        """Send one request (after its pacing slot, when pacing; no retry, no breaker); see :meth:`request`."""
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
                f"{self.service}: connection failed on {endpoint}: {type(exc).__name__}", service=self.service, endpoint=endpoint
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


def _override(policy: BreakerPolicy, overrides: dict[str, Any], *, conn_id: str) -> BreakerPolicy:
    """Return ``policy`` with a connection's ``extra.breaker`` fields applied (validated)."""
    from pydantic import ValidationError

    try:
        return BreakerPolicy.model_validate({**policy.model_dump(), **overrides, "name": policy.name})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"connection {conn_id}: extra.breaker.{field}: {err['msg']} (got {err.get('input')!r})",
            field=f"extra.breaker.{field}",
            value=err.get("input"),
        ) from None
