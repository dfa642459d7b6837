"""
The console's FastAPI app, mounted by the plugin at ``/resilience`` on the Airflow API server.

Access (docs/console.md lists every route): reading needs read access to the ``company_enrichment``
DAG, acting (acknowledge, resolve, force a breaker, replay) needs edit access to it; no credential is
401, a credential without the access 403. Plugin apps are mounted without auth, so every route takes
one of the two dependencies below. The browser authenticates with the UI's ``_token`` cookie, so the
forms are protected against cross-site posts by a double-submit token and an Origin check; the JSON
API's POSTs take a bearer token only, which another site cannot send.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from resilient_etl_console import model

log = logging.getLogger(__name__)

DAG_ID = "company_enrichment"
PREFIX = "/resilience"
CSRF_COOKIE = "resilience_csrf"
CSRF_FIELD = "csrf_token"
STATIC = Path(__file__).with_name("static")

CanRead = Depends(requires_access_dag("GET", param_dag_id=DAG_ID))
CanAct = Depends(requires_access_dag("PUT", param_dag_id=DAG_ID))

app = FastAPI(
    title="resilient-etl console",
    description=(
        "Health, breakers, incidents, quarantine, runs and drills of the supplier pipeline. Every route needs an Airflow "
        "token (the UI's session cookie or `Authorization: Bearer`, from `POST /auth/token`): read access to the "
        f"`{DAG_ID}` DAG to read, edit access to act."
    ),
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


def _swagger_assets() -> Path:
    """Return the folder of the Swagger UI files installed with fastapi-offline (served here: no CDN)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).with_name("static")


app.mount("/static/docs", StaticFiles(directory=_swagger_assets()), name="docs-assets")
app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _when(value: Any) -> str:
    """Format a timestamp as people read it on every page: ``2026-12-03 08:40:17 UTC``."""
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, dt.datetime) else str(value)


@cache
def _templates() -> Environment:
    env = Environment(loader=PackageLoader("resilient_etl_console", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["when"] = _when
    env.filters["iso_when"] = lambda v: _when(dt.datetime.fromisoformat(v)) if v else ""
    env.filters["q"] = lambda v: quote(str(v), safe="")
    return env


# -- context: config, warehouse, the user ------------------------------------------------------------------


def _config() -> Any:
    from resilient_etl.config import get_config

    return get_config()


def _warehouse(cfg: Any) -> Any:
    from resilient_etl.hooks.warehouse import WarehouseHook

    hook = WarehouseHook(cfg.warehouse.conn_id)
    hook.ensure_schema()
    return hook


def _can_act(user: Any) -> bool:
    from airflow.api_fastapi.app import get_auth_manager

    return bool(get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=DAG_ID), user=user))


def _user_name(user: Any) -> str:
    return str(user.get_name())


# -- CSRF: double-submit cookie + Origin ----------------------------------------------------------------------


def _csrf_token(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)


def check_csrf(request: Request, token: str) -> None:
    """
    Refuse a form post that did not come from a console page (403).

    :param token: the form's hidden ``csrf_token``; it must equal the console's cookie, which another site
        can neither read nor set, and the Origin (when the browser sends one) must be this server
    """
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not token or not hmac.compare_digest(cookie, token):
        raise HTTPException(status_code=403, detail="CSRF token missing or wrong: reload the page and try again")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(status_code=403, detail=f"cross-site post from {origin} refused")


def _page(request: Request, template: str, user: Any, *, title: str, **context: Any) -> HTMLResponse:
    started = time.perf_counter()
    token = _csrf_token(request)
    html = (
        _templates()
        .get_template(template)
        .render(
            title=title,
            prefix=PREFIX,
            user=_user_name(user),
            can_act=_can_act(user),
            csrf_field=CSRF_FIELD,
            csrf_token=token,
            done=request.query_params.get("done", ""),
            now=dt.datetime.now(dt.UTC),
            **context,
        )
    )
    response = HTMLResponse(html)
    response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
    response.set_cookie(CSRF_COOKIE, token, path=PREFIX, samesite="strict", httponly=True)
    return response


def _back(path: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}{path}{'&' if '?' in path else '?'}{urlencode({'done': message})}", status_code=303)


async def _timed(request: Request, call: Callable[[], Any]) -> Any:
    """Run a blocking data call in the thread pool and add its time to the response's Server-Timing."""
    started = time.perf_counter()
    value = await run_in_threadpool(call)
    request.state.data_ms = (time.perf_counter() - started) * 1000
    return value


@app.middleware("http")
async def _server_timing(request: Request, call_next: Any) -> Response:
    started = time.perf_counter()
    response: Response = await call_next(request)
    data = getattr(request.state, "data_ms", None)
    parts = [response.headers.get("Server-Timing", "")] if response.headers.get("Server-Timing") else []
    if data is not None:
        parts.append(f"data;dur={data:.1f}")
    parts.append(f"total;dur={(time.perf_counter() - started) * 1000:.1f}")
    response.headers["Server-Timing"] = ", ".join(parts)
    return response


# -- data, shared by the pages and the JSON API -----------------------------------------------------------


def overview_data(*, hours: float = 24, runs: int = 30) -> dict[str, Any]:
    """Return the overview: breakers now and over the last ``hours``, active incidents, the last runs, the backlog."""
    from resilient_etl.hooks.shared_state import configured_store
    from resilient_etl.pipeline.backlog import backlog_size
    from resilient_etl.resilience.breaker import breaker_states

    cfg = _config()
    warehouse = _warehouse(cfg)
    end = dt.datetime.now(dt.UTC)
    start = end - dt.timedelta(hours=hours)
    states = breaker_states(configured_store(cfg, warehouse), [cfg.breakers.policy(n) for n in model.BREAKERS])
    with warehouse.begin() as conn:
        events = model.breaker_history(conn, since=start)
        initial = {name: model.state_before(conn, name, start) for name in model.BREAKERS}
        active = model.list_incidents(conn, status="active", limit=50)
        counts = model.incident_counts(conn)
        last_runs = model.recent_runs(conn, runs)
    return {
        "breakers": states,
        "breaker_events": events,
        "breaker_initial": initial,
        "window": {"start": start, "end": end, "hours": hours},
        "incidents": active,
        "incident_counts": counts,
        "runs": last_runs,
        "backlog": backlog_size(warehouse),
    }


def incidents_data(status: str | None, severity: str | None, category: str | None, limit: int) -> dict[str, Any]:
    """Return the incidents matching the filters, each with its escalation timeline."""
    cfg = _config()
    with _warehouse(cfg).begin() as conn:
        found = model.list_incidents(conn, status=status, severity=severity, category=category, limit=limit)
        now = dt.datetime.now(dt.UTC)
        timelines = {i.id: model.incident_timeline(i, cfg, model.incident_people(conn, i.id), now=now) for i in found}
        categories = sorted(cfg.classification.entries())
    return {"incidents": found, "timelines": timelines, "categories": categories}


def breakers_data() -> dict[str, Any]:
    """Return each breaker's state, policy and last counts, the forced changes (audit trail) and recent events."""
    from resilient_etl.hooks.shared_state import configured_store
    from resilient_etl.resilience.breaker import breaker_states

    cfg = _config()
    warehouse = _warehouse(cfg)
    policies = {n: cfg.breakers.policy(n) for n in model.BREAKERS}
    states = breaker_states(configured_store(cfg, warehouse), list(policies.values()))
    with warehouse.begin() as conn:
        events = model.breaker_history(conn, since=dt.datetime.now(dt.UTC) - dt.timedelta(days=7), limit=100)
        audit = model.breaker_overrides(conn)
    for entry in states:
        policy = policies[entry["name"]]
        last = next((e for e in reversed(events) if e["name"] == entry["name"]), None)
        entry.update(
            opens_after=f"{policy.fail_max} consecutive failures or {policy.failure_rate_threshold:.0%} of {policy.minimum_calls}+ calls in {policy.window_seconds:g} s",
            reset_timeout_seconds=policy.reset_timeout_seconds,
            last_change=last,
            calls=last["calls"] if last else None,
            failures=last["failures"] if last else None,
        )
    return {"breakers": states, "events": list(reversed(events)), "audit": audit}


def quarantine_data(run_id: str | None, reason: str | None) -> dict[str, Any]:
    """Return the quarantine by run and reason, the rows of the selection (raw), and the rejected files."""
    from resilient_etl.recovery import replay

    cfg = _config()
    with _warehouse(cfg).begin() as conn:
        summary = replay.quarantine_summary(conn)
        rows = replay.quarantine_rows(conn, run_id=run_id, reason=reason, limit=200, raw=True) if run_id else []
    return {"summary": summary, "rows": rows, "run_id": run_id, "reason": reason, "rejected": replay.rejected_files(cfg.paths.rejected)}


def run_data(run_id: str, dag_run: Any) -> dict[str, Any]:
    """Return one run's view (:func:`model.run_view`) with Airflow's state of the run."""
    cfg = _config()
    started = getattr(dag_run, "start_date", None)
    ended = getattr(dag_run, "end_date", None)
    with _warehouse(cfg).begin() as conn:
        view = model.run_view(conn, run_id, started_at=started, ended_at=ended)
    view["airflow"] = {"state": str(getattr(dag_run, "state", "") or "unknown"), "start_date": started, "end_date": ended}
    return view


def drills_data() -> dict[str, Any]:
    """Return the latest result of each drill scenario."""
    with _warehouse(_config()).begin() as conn:
        return {"drills": model.latest_drills(conn)}


def health_data() -> dict[str, Any]:
    """Return the health document (every check run now, in parallel, each bounded by its timeout)."""
    from resilient_etl.health import check_health

    return check_health()


# -- health (JSON, also the monitoring endpoint) ---------------------------------------------------------


@app.get("/health", responses={200: {"description": "pass or warn"}, 503: {"description": "fail"}}, dependencies=[CanRead])
async def health() -> Any:
    """Check every dependency now (in parallel, each bounded by its timeout)."""
    from resilient_etl.health import FAIL, MEDIA_TYPE

    doc = await run_in_threadpool(health_data)
    return JSONResponse(doc, status_code=503 if doc["status"] == FAIL else 200, media_type=MEDIA_TYPE)


# -- the JSON API ----------------------------------------------------------------------------------------------


@app.get("/api/overview", dependencies=[CanRead])
async def api_overview(hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24, runs: Annotated[int, Query(ge=1, le=500)] = 30) -> Any:
    """Return the overview: breakers, their changes over the last ``hours``, active incidents, the last ``runs`` runs, the backlog."""
    return model.jsonable(await run_in_threadpool(lambda: overview_data(hours=hours, runs=runs)))


@app.get("/api/incidents", dependencies=[CanRead])
async def api_incidents(
    status: str | None = None, severity: str | None = None, category: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> Any:
    """Return incidents (filters: ``status`` active|open|acknowledged|resolved, ``severity``, ``category``), with their timelines."""
    data = await run_in_threadpool(lambda: incidents_data(status, severity, category, limit))
    return model.jsonable({"incidents": data["incidents"], "timelines": {str(k): v for k, v in data["timelines"].items()}})


@app.get("/api/breakers", dependencies=[CanRead])
async def api_breakers() -> Any:
    """Return each breaker's state, counts and next probe, the forced changes and the last week's events."""
    return model.jsonable(await run_in_threadpool(breakers_data))


@app.get("/api/quarantine", dependencies=[CanRead])
async def api_quarantine(run_id: str | None = None, reason: str | None = None) -> Any:
    """Return the quarantine by run and reason; with ``run_id``, its rows as read; and the rejected files."""
    return model.jsonable(await run_in_threadpool(lambda: quarantine_data(run_id, reason)))


@app.get("/api/runs/{dag_id}/{run_id}", dependencies=[CanRead])
async def api_run(dag_id: str, run_id: str, session: SessionDep) -> Any:
    """Return one run's reconciliation, enrichment sources, quarantine reasons, breaker changes and progress."""
    dag_run = _dag_run(session, dag_id, run_id)
    return model.jsonable(await run_in_threadpool(lambda: run_data(run_id, dag_run)))


@app.get("/api/drills", dependencies=[CanRead])
async def api_drills() -> Any:
    """Return the latest result of each failure drill."""
    return model.jsonable(await run_in_threadpool(drills_data))


def _bearer_only(request: Request) -> None:
    """Refuse a JSON-API POST authenticated by the cookie alone (CSRF): scripts send ``Authorization: Bearer``."""
    if not request.headers.get("authorization", "").lower().startswith("bearer "):
        raise HTTPException(status_code=403, detail="POSTs to the API need an Authorization: Bearer token (the forms carry a CSRF token)")


@app.post("/api/incidents/{incident_id}/{action}", dependencies=[CanAct, Depends(_bearer_only)])
async def api_incident_action(incident_id: int, action: str, user: GetUserDep, note: str | None = None) -> Any:
    """Acknowledge (``ack``) or resolve (``resolve``, with ``note``) an incident, recorded with the caller's name."""
    change = await run_in_threadpool(lambda: _change_incident(incident_id, action, note, _user_name(user)))
    return model.jsonable({"incident": change.incident, "override": change.override.as_row()})


@app.post("/api/breakers/{name}/{action}", dependencies=[CanAct, Depends(_bearer_only)])
async def api_breaker_action(name: str, action: str, user: GetUserDep, reason: str = "", minutes: float = 60.0) -> Any:
    """Force breaker ``name`` open (``open``, for ``minutes``) or closed (``reset``), recorded with the caller's name."""
    change = await run_in_threadpool(lambda: _force_breaker(name, action, reason, minutes, _user_name(user)))
    return model.jsonable({"name": change.name, "from": change.old, "to": change.new, "override": change.override.as_row()})


# -- actions (the same code as the CLI) -------------------------------------------------------------------


def _change_incident(incident_id: int, action: str, note: str | None, by: str) -> Any:
    from resilient_etl.alerting.engine import Alerter
    from resilient_etl.recovery.incidents import change_incident

    cfg = _config()
    try:
        return change_incident(Alerter(cfg, warehouse=_warehouse(cfg)), incident_id, action, note=note or None, by=by)
    except LookupError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except ValueError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc


def _force_breaker(name: str, action: str, reason: str, minutes: float, by: str) -> Any:
    from resilient_etl.recovery.breakers import force_breaker

    if action not in ("open", "reset"):
        raise HTTPException(status_code=404, detail=f"no breaker action {action!r} (open or reset)")
    if action == "open" and not 0 < minutes <= 24 * 60:
        raise HTTPException(status_code=422, detail="minutes: between 0 and 1440")
    cfg = _config()
    try:
        return force_breaker(cfg, _warehouse(cfg), name, open_minutes=minutes if action == "open" else None, why=reason, by=by)
    except KeyError as exc:
        raise HTTPException(status_code=404, detail=exc.args[0]) from exc


def _replay(run_id: str, reason: str | None, why: str, by: str) -> Any:
    from resilient_etl.recovery import replay

    cfg = _config()
    with _warehouse(cfg).begin() as conn:
        return replay.replay_quarantine(conn, landing_dir=cfg.paths.landing, run_id=run_id, reason=reason or None, why=why, by=by)


def _dag_run(session: Any, dag_id: str, run_id: str) -> Any:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    return session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))


# -- pages -------------------------------------------------------------------------------------------------------


@app.get("/", include_in_schema=False, dependencies=[CanRead])
async def index() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/ui/overview", status_code=307)


@app.get("/ui/overview", response_class=HTMLResponse, dependencies=[CanRead], include_in_schema=False)
async def overview_page(request: Request, user: GetUserDep, hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24) -> HTMLResponse:
    """The overview: health, breakers and their timeline, active incidents, reconciliation of the last runs, backlog."""
    from resilient_etl_console import charts  # matplotlib: only where a chart is drawn, never in workers

    data = await _timed(request, lambda: overview_data(hours=hours))
    w = data["window"]
    timeline = charts.breaker_timeline(model.BREAKERS, data["breaker_initial"], data["breaker_events"], start=w["start"], end=w["end"])
    bars = charts.reconciliation_bars(data["runs"])
    return _page(request, "overview.html", user, title="Overview", data=data, timeline_svg=timeline, bars_svg=bars)


@app.get("/ui/fragments/health", response_class=HTMLResponse, dependencies=[CanRead], include_in_schema=False)
async def health_fragment(request: Request, user: GetUserDep) -> HTMLResponse:
    """The health table (loaded by the overview after it renders: the checks take up to their timeout)."""
    doc = await _timed(request, health_data)
    rows = [
        {"check": name, **o}
        for name, observations in sorted(doc["checks"].items())
        for o in observations  # one row per component measured
    ]
    return HTMLResponse(_templates().get_template("health.html").render(doc=doc, rows=rows))


@app.get("/ui/incidents", response_class=HTMLResponse, dependencies=[CanRead], include_in_schema=False)
async def incidents_page(
    request: Request,
    user: GetUserDep,
    status: str | None = "active",
    severity: str | None = None,
    category: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> HTMLResponse:
    """Incidents with filters; acknowledge and resolve buttons; each one's escalation timeline."""
    status, severity, category = status or None, severity or None, category or None
    data = await _timed(request, lambda: incidents_data(status, severity, category, limit))
    filters = {"status": status or "", "severity": severity or "", "category": category or ""}
    return _page(request, "incidents.html", user, title="Incidents", data=data, filters=filters)


@app.post("/ui/incidents/{incident_id}/{action}", dependencies=[CanAct], include_in_schema=False)
async def incident_form(
    request: Request, incident_id: int, action: str, user: GetUserDep, csrf_token: Annotated[str, Form()] = "", note: Annotated[str, Form()] = ""
) -> RedirectResponse:
    """Acknowledge or resolve an incident from the incidents page."""
    check_csrf(request, csrf_token)
    if action == "resolve" and not note.strip():
        return _back("/ui/incidents", f"incident #{incident_id} not resolved: a resolution note is required")
    change = await run_in_threadpool(lambda: _change_incident(incident_id, action, note.strip(), _user_name(user)))
    return _back(
        "/ui/incidents?status=",
        f"incident #{change.incident.id} {change.incident.status} by {change.override.by_user} (override #{change.override.id})",
    )


@app.get("/ui/breakers", response_class=HTMLResponse, dependencies=[CanRead], include_in_schema=False)
async def breakers_page(request: Request, user: GetUserDep) -> HTMLResponse:
    """Each breaker's state, counts and next probe; force open / reset; the audit trail."""
    data = await _timed(request, breakers_data)
    return _page(request, "breakers.html", user, title="Breakers", data=data)


@app.post("/ui/breakers/{name}/{action}", dependencies=[CanAct], include_in_schema=False)
async def breaker_form(
    request: Request,
    name: str,
    action: str,
    user: GetUserDep,
    csrf_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    minutes: Annotated[float, Form()] = 60.0,
) -> RedirectResponse:
    """Force a breaker open or closed from the breakers page."""
    check_csrf(request, csrf_token)
    if not reason.strip():
        return _back("/ui/breakers", f"breaker {name} not changed: a reason is required")
    change = await run_in_threadpool(lambda: _force_breaker(name, action, reason.strip(), minutes, _user_name(user)))
    return _back("/ui/breakers", f"breaker {change.name}: {change.old} -> {change.new} by {change.override.by_user} (override #{change.override.id})")


@app.get("/ui/quarantine", response_class=HTMLResponse, dependencies=[CanRead], include_in_schema=False)
async def quarantine_page(request: Request, user: GetUserDep, run_id: str | None = None, reason: str | None = None) -> HTMLResponse:
    """Quarantined rows by run and reason, the raw rows and the rule each broke, replay; rejected files with their reports."""
    data = await _timed(request, lambda: quarantine_data(run_id or None, reason or None))
    return _page(request, "quarantine.html", user, title="Quarantine", data=data)


@app.post("/ui/quarantine/replay", dependencies=[CanAct], include_in_schema=False)
async def replay_form(
    request: Request,
    user: GetUserDep,
    run_id: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    why: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Replay a run's quarantined rows (one reason or all) through the next run, exactly once."""
    check_csrf(request, csrf_token)
    if not why.strip():
        return _back(f"/ui/quarantine?run_id={quote(run_id)}", "not replayed: say what was fixed")
    done = await run_in_threadpool(lambda: _replay(run_id, reason, why.strip(), _user_name(user)))
    if done.file is None:
        message = f"nothing to replay for {run_id}: {done.already_replayed} rows replayed before, {done.not_replayable} unreadable"
    else:
        message = f"{done.rows} rows of {run_id} written to {done.file.name}; the next run loads them (override #{done.override_id})"
    return _back(f"/ui/quarantine?run_id={quote(run_id)}", message)


@app.get("/ui/rejected/{name}", response_class=HTMLResponse, dependencies=[CanRead], include_in_schema=False)
async def rejected_report(request: Request, user: GetUserDep, name: str) -> HTMLResponse:
    """A rejected file's reason and quality report (only files listed in rejected/)."""
    from resilient_etl.pipeline.files import QUALITY_SUFFIX, REASON_SUFFIX
    from resilient_etl.recovery import replay

    cfg = _config()
    if name not in {f["file"] for f in replay.rejected_files(cfg.paths.rejected)}:
        raise HTTPException(status_code=404, detail=f"no rejected file {name!r}")
    folder = cfg.paths.rejected
    texts = {
        label: (folder / (name + suffix)).read_text(encoding="utf-8", errors="replace")
        for label, suffix in (("reason", REASON_SUFFIX), ("quality report", QUALITY_SUFFIX))
        if (folder / (name + suffix)).exists()
    }
    return _page(request, "rejected.html", user, title=f"Rejected: {name}", name=name, texts=texts)


@app.get("/ui/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[CanRead], include_in_schema=False)
async def run_page(request: Request, user: GetUserDep, dag_id: str, run_id: str, session: SessionDep) -> HTMLResponse:
    """One run (the DAG-run tab): reconciliation, enrichment sources, quarantine reasons, breaker changes, progress."""
    if dag_id != DAG_ID:
        return _page(request, "other_dag.html", user, title="Resilience", dag_id=dag_id)
    dag_run = _dag_run(session, dag_id, run_id)
    data = await _timed(request, lambda: run_data(run_id, dag_run))
    return _page(request, "run.html", user, title=f"Run {run_id}", data=data, dag_id=dag_id, running=dag_run is not None and dag_run.end_date is None)


@app.get("/ui/drills", response_class=HTMLResponse, dependencies=[CanRead], include_in_schema=False)
async def drills_page(request: Request, user: GetUserDep) -> HTMLResponse:
    """The latest result of each failure drill."""
    data = await _timed(request, drills_data)
    return _page(request, "drills.html", user, title="Drills", data=data)


# -- the API's own docs, offline ---------------------------------------------------------------------------------


@app.get("/openapi.json", include_in_schema=False, dependencies=[CanRead])
async def openapi() -> JSONResponse:
    return JSONResponse(app.openapi())


@app.get("/docs", include_in_schema=False, dependencies=[CanRead])
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=f"{PREFIX}/openapi.json",
        title="resilient-etl console API",
        swagger_js_url=f"{PREFIX}/static/docs/swagger-ui-bundle.js",
        swagger_css_url=f"{PREFIX}/static/docs/swagger-ui.css",
        swagger_favicon_url=f"{PREFIX}/static/docs/favicon.png",
    )


def route_table() -> list[dict[str, str]]:
    """Return every route of the console with its methods and access rule (docs/console.md, the closing check)."""
    out = []
    for route in app.routes:
        path = getattr(route, "path", "")
        methods = sorted(getattr(route, "methods", None) or ["GET"])
        deps = getattr(route, "dependencies", [])
        if path.startswith("/static"):
            rule = "public (CSS, icons, the Swagger UI files: no data)"
        elif CanAct in deps:
            rule = f"edit access to {DAG_ID}" + (" + bearer token" if path.startswith("/api/") else " + CSRF token")
        else:
            rule = f"read access to {DAG_ID}"
        out.append({"path": PREFIX + path, "methods": ",".join(m for m in methods if m != "HEAD"), "access": rule})
    return out


def routes_markdown() -> str:
    """Return the route table of docs/console.md (a test fails while the doc's copy differs)."""
    lines = ["| Method | Route | Access |", "|---|---|---|"]
    lines += [f"| `{r['methods']}` | `{r['path']}` | {r['access']} |" for r in route_table()]
    return "\n".join(lines) + "\n"
