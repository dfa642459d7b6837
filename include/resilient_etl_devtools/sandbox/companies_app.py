"""
A Companies House Public Data API server (CONTRACTS.md part 2).

HTTP Basic auth with the API key as user name, the four ``X-Ratelimit-*`` headers on every response, a
fixed window quota per key that answers 429 once spent, both observed 404 body shapes, and the 500 a
malformed company number gets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from resilient_etl_devtools.sandbox import data
from resilient_etl_devtools.sandbox.admin import admin_router
from resilient_etl_devtools.sandbox.faults import FaultMiddleware, FaultRegistry

DEFAULT_API_KEY = "sandbox-key"
DEFAULT_LIMIT = 600
DEFAULT_WINDOW_SECONDS = 300
_NUMBER_RE = re.compile(r"^[A-Z0-9]{8}$")
_ERROR_TEXT = {429: "Too Many Requests", 500: "Internal server error", 502: "Bad Gateway", 503: "Service Unavailable"}


def endpoint_of(method: str, path: str) -> str:
    """Name the endpoint a request hits, for fault targeting."""
    if path.startswith("/search/companies"):
        return "search"
    if re.match(r"^/company/[^/]+/officers", path):
        return "officers"
    if re.match(r"^/company/[^/]+$", path):
        return "company"
    return "other"


def error_body(status: int) -> dict[str, Any]:
    """Return a Companies House style flat error body for an injected ``status``."""
    return {"error": _ERROR_TEXT.get(status, "Error"), "type": "ch:service"}


@dataclass
class _Window:
    # The window opens on the whole second of its first request, so Reset is a whole epoch second
    # (as the real header) and a client that waits until Reset is never early.
    resets_at: float
    used: int = 0


@dataclass
class RateLimiter:
    """
    Fixed-window quota per API key: the window opens on the first request after a reset.

    :param limit: requests per window
    :param window_seconds: window length
    :param clock: time source (tests pass their own)
    """

    limit: int = DEFAULT_LIMIT
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    clock: Callable[[], float] = time.time
    rejected: int = 0  # 429s sent, for tests and benchmarks
    _windows: dict[str, _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, *, limit: int, window_seconds: float) -> None:
        """Start over with a new quota: fresh windows, no 429s counted."""
        with self._lock:
            self.limit, self.window_seconds, self.rejected = limit, window_seconds, 0
            self._windows.clear()

    def hit(self, key: str) -> tuple[bool, dict[str, str]]:
        """Count one request for ``key``; return whether it is allowed and the headers to send."""
        now = self.clock()
        with self._lock:
            win = self._windows.get(key)
            if win is None or now >= win.resets_at:
                win = self._windows[key] = _Window(resets_at=math.floor(now) + self.window_seconds)
            win.used += 1
            allowed = win.used <= self.limit
            self.rejected += not allowed
            headers = {
                "X-Ratelimit-Limit": str(self.limit),
                "X-Ratelimit-Remain": str(max(0, self.limit - win.used)),
                "X-Ratelimit-Reset": str(math.ceil(win.resets_at)),
                "X-Ratelimit-Window": _window_label(self.window_seconds),
            }
        return allowed, headers


def _window_label(seconds: float) -> str:
    return f"{int(seconds // 60)}m" if seconds % 60 == 0 else f"{int(seconds)}s"


def _api_key(request_headers: dict[bytes, bytes]) -> tuple[str | None, str | None]:
    """Return (key, problem): the Basic-auth user name, or why the header is unusable."""
    raw = request_headers.get(b"authorization", b"").decode("latin-1").strip()
    if not raw:
        return None, "Empty Authorization header"
    scheme, _, token = raw.partition(" ")
    if scheme.lower() != "basic":
        return None, "Invalid Authorization"
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None, "Invalid Authorization"
    user, colon, _ = decoded.partition(":")
    if not colon:  # the classic mistake: base64 of the key without the trailing colon
        return None, "Invalid Authorization"
    return user, None


class QuotaMiddleware:
    """Count every request against its key's window, add the headers, answer 429 when spent."""

    def __init__(self, app: Any, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/__sandbox"):
            await self.app(scope, receive, send)
            return
        key, _ = _api_key(dict(scope["headers"]))
        allowed, headers = self.limiter.hit(key or "<anonymous>")
        raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        raw_headers.append((b"access-control-expose-headers", b", ".join(h.encode() for h in headers)))
        if not allowed:
            body = json.dumps({"error": "Too Many Requests", "type": "ch:service"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + raw_headers,
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + raw_headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _not_found(number: str) -> JSONResponse:
    # Both 404 shapes are live: the errors[] model and (2026) a timestamp/message body.
    if int(hashlib.sha1(number.encode()).hexdigest(), 16) % 2:
        body: dict[str, Any] = {"errors": [{"type": "ch:service", "error": "company-profile-not-found"}]}
    else:
        body = {
            "timestamp": "2026-09-04T16:07:18.488455029",
            "message": f'404 NOT_FOUND "Resource not found for company profile {number}"',
            "request_id": hashlib.sha1(number.encode()).hexdigest()[:16],
        }
    return JSONResponse(body, status_code=404)


def _search_item(profile: dict[str, Any]) -> dict[str, Any]:
    address = profile.get("registered_office_address", {})
    item = {
        "kind": "searchresults#company",
        "title": profile["company_name"],
        "company_number": profile["company_number"],
        "company_type": profile["type"],
        "date_of_creation": profile.get("date_of_creation"),
        "address": address,
        "address_snippet": ", ".join(v for v in address.values() if v),
        "description": f"{profile['company_number']} - Incorporated on {profile.get('date_of_creation', '')}",
        "description_identifier": ["incorporated-on"],
        "snippet": "",
        "matches": {"title": [1, len(profile["company_name"])]},
        "links": {"self": f"/company/{profile['company_number']}"},
    }
    if "company_status" in profile:
        item["company_status"] = profile["company_status"]
    return item


def create_app(
    *,
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,),
    limiter: RateLimiter | None = None,
    registry: FaultRegistry | None = None,
    seed: int = data.DEFAULT_SEED,
    companies: int = data.DEFAULT_COMPANY_COUNT,
) -> QuotaMiddleware:
    """
    Build the Companies House sandbox app.

    :param api_keys: keys accepted as the Basic-auth user name
    :param limiter: the quota (600 per 5 minutes when omitted, as the real API)
    :param registry: fault registry (a new one when omitted)
    :param seed: seed of the generated company register
    :param companies: how many companies it holds
    """
    registry = registry or FaultRegistry()
    limiter = limiter or RateLimiter()
    register = data.company_register(seed, companies)
    app = FastAPI(title="Companies House sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(admin_router(registry))

    # The quota as another process (a cluster test, a drill) sees and changes it: a new quota starts
    # fresh windows and a fresh count of 429s.
    @app.get("/__sandbox/quota")
    def get_quota() -> dict[str, Any]:
        return {"limit": limiter.limit, "window_seconds": limiter.window_seconds, "rejected": limiter.rejected}

    @app.put("/__sandbox/quota")
    def set_quota(quota: dict[str, float]) -> dict[str, Any]:
        limiter.reset(limit=int(quota.get("limit", limiter.limit)), window_seconds=float(quota.get("window_seconds", limiter.window_seconds)))
        return get_quota()

    @app.middleware("http")
    async def basic_auth(request: Request, call_next: Any) -> Any:
        if request.url.path.startswith("/__sandbox"):
            return await call_next(request)
        key, problem = _api_key(dict(request.headers.raw))
        if problem is None and key not in api_keys:
            problem = "Invalid Authorization"
        if problem:
            headers = {"WWW-Authenticate": 'Basic realm="api"'} if problem == "Invalid Authorization" else {}
            return JSONResponse({"error": problem, "type": "ch:service"}, status_code=401, headers=headers)
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"errors": [{"type": "ch:service", "error": "not-found"}]}, status_code=exc.status_code)

    @app.get("/company/{number}")
    def company(number: str) -> JSONResponse:
        key = number.strip().upper()
        if not _NUMBER_RE.match(key):
            return JSONResponse({"exception_id": "6wm4ym5vfxu3", "error": "Internal server error"}, status_code=500)
        profile = register.profiles.get(key)
        if profile is None:
            return _not_found(key)
        return JSONResponse(profile, headers={"ETag": profile.get("etag", "")})

    @app.get("/search/companies")
    def search(request: Request) -> JSONResponse:
        qp = request.query_params
        try:
            per_page = min(int(qp.get("items_per_page", 20)), 100)
            start = int(qp.get("start_index", 0))
        except ValueError:
            return JSONResponse(
                {"errors": [{"type": "ch:validation", "error": "invalid-parameter", "location_type": "query-parameter"}]}, status_code=400
            )
        hits = register.search(qp.get("q", ""))
        page = hits[start : start + per_page]
        return JSONResponse(
            {
                "kind": "search#companies",
                "items": [_search_item(p) for p in page],
                "items_per_page": per_page,
                "start_index": start,
                "total_results": len(hits),
                "page_number": start // per_page + 1 if per_page else 1,
            }
        )

    faulty = FaultMiddleware(app, registry=registry, endpoint_of=endpoint_of, error_body=error_body)
    quota = QuotaMiddleware(faulty, limiter)
    return quota
