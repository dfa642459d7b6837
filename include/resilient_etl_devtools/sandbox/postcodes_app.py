"""A postcodes.io server (routes, envelopes, limits and error strings as in CONTRACTS.md part 1)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from resilient_etl.hooks.identifiers import compact_postcode, is_valid_postcode
from resilient_etl_devtools.sandbox import data
from resilient_etl_devtools.sandbox.admin import admin_router
from resilient_etl_devtools.sandbox.faults import FaultMiddleware, FaultRegistry

BULK_LIMIT = 100
_BULK_FILTERABLE = {
    "postcode",
    "quality",
    "eastings",
    "northings",
    "country",
    "nhs_ha",
    "longitude",
    "latitude",
    "parliamentary_constituency",
    "european_electoral_region",
    "primary_care_trust",
    "region",
    "lsoa",
    "msoa",
    "incode",
    "outcode",
    "codes",
    "admin_district",
    "parish",
    "admin_county",
    "admin_ward",
    "ccg",
    "nuts",
    "ced",
}
_HELP = (
    "\nYou need to submit a JSON object with an array of postcodes or geolocation objects."
    "\nAlso ensure that Content-Type is set to application/json\n"
)
INVALID_JSON = "Invalid JSON submitted." + _HELP
INVALID_QUERY = "Invalid JSON query submitted. " + _HELP
NOT_ARRAY = "Invalid data submitted. You need to provide a JSON array"
TOO_MANY_POSTCODES = "Too many postcodes submitted. Up to 100 postcodes can be bulk requested at a time"
TOO_MANY_LOCATIONS = "Too many locations submitted. Up to 100 locations can be bulk requested at a time"
SERVER_ERROR = (
    "500 Server Error.\nFor an urgent fix email support@ideal-postcodes.co.uk. \n"
    "Alternatively submit an issue at https://github.com/ideal-postcodes/postcodes.io/issues\n"
)
_ERROR_TEXT = {
    400: "Bad Request",
    404: "Resource not found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: SERVER_ERROR,
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_ENDPOINTS = [
    (re.compile(r"^/postcodes/[^/]+/validate$"), "validate"),
    (re.compile(r"^/postcodes/[^/]+/autocomplete$"), "autocomplete"),
    (re.compile(r"^/postcodes/[^/]+$"), "lookup"),
    (re.compile(r"^/terminated_postcodes/"), "terminated"),
    (re.compile(r"^/outcodes/"), "outcode"),
]


def endpoint_of(method: str, path: str) -> str:
    """Name the endpoint a request hits, for fault targeting."""
    if path.rstrip("/") == "/postcodes":
        return "bulk" if method == "POST" else "search"
    for pattern, name in _ENDPOINTS:
        if pattern.match(path):
            return name
    return "other"


def error_body(status: int) -> dict[str, Any]:
    """Return postcodes.io's error envelope for ``status``."""
    return {"status": status, "error": _ERROR_TEXT.get(status, "Error")}


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"status": 200, "result": result})


def _err(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": status, "error": message, **extra}, status_code=status)


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def _nearest(lon: float, lat: float, radius: float, limit: int) -> list[dict[str, Any]] | None:
    hits = []
    for rec in data.live_postcodes().values():
        if rec["latitude"] is None:
            continue
        d = _distance_m(lat, lon, rec["latitude"], rec["longitude"])
        if d <= radius:
            hits.append({**rec, "distance": round(d, 6)})
    hits.sort(key=lambda r: (r["distance"], r["postcode"]))
    return hits[:limit] or None


def _prefix_search(query: str, limit: int) -> list[dict[str, Any]] | None:
    key = compact_postcode(query)
    exact = data.live_postcodes().get(key)
    if exact:
        return [exact]
    found = [r for k, r in sorted(data.live_postcodes().items()) if k.startswith(key)]
    return found[:limit] or None


def _int_param(value: str | None, default: int, cap: int) -> int:
    try:
        n = int(value) if value is not None else default
    except ValueError:
        return default
    return min(n, cap) if n >= 1 else default


def _filter(result: dict[str, Any] | None, attrs: set[str] | None) -> dict[str, Any] | None:
    if result is None or attrs is None:
        return result
    return {k: v for k, v in result.items() if k in attrs}


def create_app(registry: FaultRegistry | None = None, *, synthetic_postcodes: int = 0) -> FaultMiddleware:
    """
    Build the postcodes.io sandbox app.

    :param registry: fault registry (a new one when omitted)
    :param synthetic_postcodes: synthetic postcodes served by lookups besides the real seed, for scale
        benchmarks (:func:`data.postcode_book`); nearest and prefix searches keep to the seed
    """
    registry = registry or FaultRegistry()
    book = data.postcode_book(synthetic_postcodes)
    app = FastAPI(title="postcodes.io sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(admin_router(registry))

    @app.exception_handler(StarletteHTTPException)
    async def not_found(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code in (404, 405):
            return _err(404, "Resource not found")
        return _err(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(_: Request, __: Exception) -> JSONResponse:
        return _err(500, SERVER_ERROR)

    @app.get("/ping")
    def ping() -> JSONResponse:
        return _ok("pong")

    @app.get("/postcodes/{postcode}/validate")
    def validate(postcode: str) -> JSONResponse:
        pc = postcode.strip()
        return _ok(is_valid_postcode(pc) and compact_postcode(pc) in book)

    @app.get("/postcodes/{postcode}/autocomplete")
    def autocomplete(postcode: str, request: Request) -> JSONResponse:
        found = _prefix_search(postcode.strip(), _int_param(request.query_params.get("limit"), 10, 100))
        return _ok([r["postcode"] for r in found] if found else None)

    @app.get("/postcodes/{postcode}")
    def lookup(postcode: str) -> JSONResponse:
        pc = postcode.strip()
        if not is_valid_postcode(pc):
            return _err(404, "Invalid postcode")
        key = compact_postcode(pc)
        found = book.get(key)
        if found is not None:
            return _ok(found)
        terminated = data.terminated_postcodes().get(key)
        if terminated is not None:
            return _err(404, "Postcode not found", terminated=terminated)
        return _err(404, "Postcode not found")

    @app.get("/postcodes")
    def search(request: Request) -> JSONResponse:
        qp = request.query_params
        lon, lat = qp.get("lon", qp.get("longitude")), qp.get("lat", qp.get("latitude"))
        if lon is not None and lat is not None:
            try:
                lon_f, lat_f = float(lon), float(lat)
            except ValueError:
                return _err(400, "Invalid longitude/latitude submitted")
            radius = min(float(qp.get("radius", 100)), 2000.0)
            return _ok(_nearest(lon_f, lat_f, radius, _int_param(qp.get("limit"), 10, 100)))
        query = qp.get("q", qp.get("query", "")).strip()
        if not query:
            return _err(400, "No postcode query submitted. Remember to include query parameter")
        return _ok(_prefix_search(query, _int_param(qp.get("limit"), 10, 100)))

    @app.post("/postcodes")
    async def bulk(request: Request) -> JSONResponse:
        raw = await request.body()
        if "application/json" in request.headers.get("content-type", ""):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return _err(400, INVALID_JSON)
        else:
            body = {}  # express.json() leaves the body empty for other content types
        if not isinstance(body, dict) or ("postcodes" not in body and "geolocations" not in body):
            return _err(400, INVALID_QUERY)
        if "postcodes" in body:
            postcodes = body["postcodes"]
            if not isinstance(postcodes, list):
                return _err(400, NOT_ARRAY)
            if len(postcodes) > BULK_LIMIT:
                return _err(400, TOO_MANY_POSTCODES)
            attrs = None
            if "filter" in request.query_params:
                wanted = {a.strip().lower() for a in request.query_params["filter"].split(",")}
                attrs = wanted & _BULK_FILTERABLE
            out = []
            for pc in postcodes:
                if not isinstance(pc, str):
                    continue  # postcodes.io silently drops non-strings after the length check
                key = compact_postcode(pc) if is_valid_postcode(pc) else None
                out.append({"query": pc, "result": _filter(book.get(key) if key else None, attrs)})
            return _ok(out)
        locations = body["geolocations"]
        if not isinstance(locations, list):
            return _err(400, NOT_ARRAY)
        if len(locations) > BULK_LIMIT:
            return _err(400, TOO_MANY_LOCATIONS)
        out = []
        for loc in locations:
            try:
                lon_f, lat_f = float(loc["longitude"]), float(loc["latitude"])
            except (KeyError, TypeError, ValueError):
                return _err(400, "Invalid longitude/latitude submitted")
            radius = min(float(loc.get("radius", 100)), 2000.0)
            limit = _int_param(str(loc.get("limit", 10)), 10, 100)
            query = {k: loc[k] for k in ("longitude", "latitude", "limit", "radius", "widesearch") if k in loc}
            out.append({"query": query, "result": _nearest(lon_f, lat_f, radius, limit)})
        return _ok(out)

    @app.get("/terminated_postcodes/{postcode}")
    def terminated(postcode: str) -> JSONResponse:
        pc = postcode.strip()
        if not is_valid_postcode(pc):
            return _err(404, "Invalid postcode")
        found = data.terminated_postcodes().get(compact_postcode(pc))
        return _ok(found) if found else _err(404, "Terminated postcode not found")

    @app.get("/outcodes/{outcode}")
    def outcode(outcode: str) -> JSONResponse:
        found = data.outcodes().get(re.sub(r"\s+", "", outcode).upper())
        return _ok(found) if found else _err(404, "Outcode not found")

    return FaultMiddleware(app, registry=registry, endpoint_of=endpoint_of, error_body=error_body)
