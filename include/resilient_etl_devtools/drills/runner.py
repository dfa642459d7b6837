"""
Run one drill: steady state → fault → pipeline → rollback → recovery → steady state, measured.

The clock is the wall clock of this process (``time.time``), shared with the alert sinks' and the
warehouse's timestamps, so detection can be taken from whichever signal came first: a failed health
check (probed every ``probe_interval`` seconds), an alert accepted by the SMTP or Slack sink, an
incident row, a file moved to rejected/, a DAG that fails to parse.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, or_, select

from resilient_etl.hooks.warehouse import WarehouseHook
from resilient_etl.hooks.warehouse.schema import drill_results, etl_checkpoints, incidents, pipeline_runs, quarantine, suppliers
from resilient_etl_devtools.drills.catalogue import Scenario
from resilient_etl_devtools.drills.faults import KillInjector, injector_for
from resilient_etl_devtools.drills.injector import DrillSetupError, Injector
from resilient_etl_devtools.drills.target import LocalTarget, PipelineRun
from resilient_etl_devtools.sandbox.data import write_sample_csv

log = logging.getLogger(__name__)
MAX_RECOVERY_RUNS = 4  # runs after the fault ends before a drill gives up on recovering


class DrillRefused(RuntimeError):
    """The target is not in its steady state (or not drillable): the drill did not start, nothing was changed."""


class DrillAborted(BaseException):
    """
    The drill was stopped (Ctrl-C, SIGTERM, its own timeout); its fault was removed on the way out.

    A ``BaseException``, as ``KeyboardInterrupt`` is: raised by the SIGTERM handler wherever the main
    thread happens to be, it must not be swallowed by an ``except Exception`` on the way - logging's
    handlers catch ``Exception`` while they write, and a SIGTERM landing mid-log-line was lost there.
    """


@dataclass
class DrillResult:
    """Everything a drill measured (seconds are wall-clock, from the fault's start unless said otherwise)."""

    scenario: str
    title: str
    category: str
    target: str
    executor: str
    started_at: float
    fault_started_at: float | None = None
    detected_at: float | None = None
    detected_by: str | None = None
    detections: dict[str, float] = field(default_factory=dict)  # signal -> first time seen
    fault_ended_at: float | None = None
    recovered_at: float | None = None
    finished_at: float | None = None
    rows_in: int = 0
    rows_lost: int | None = None
    rows_duplicated: int | None = None
    dead_requests: int = 0
    retries_used: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)
    steady_state_before: dict[str, str] = field(default_factory=dict)
    steady_state_after: dict[str, str] = field(default_factory=dict)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    measures: dict[str, Any] = field(default_factory=dict)  # what the fault's injector measured (backup, restore, failover)
    error: str | None = None

    def since_fault(self, at: float | None) -> float | None:
        return None if at is None or self.fault_started_at is None else round(at - self.fault_started_at, 1)

    @property
    def time_to_detect(self) -> float | None:
        return self.since_fault(self.detected_at)

    @property
    def rto(self) -> float | None:
        return self.since_fault(self.recovered_at)

    @property
    def recover_after_fault(self) -> float | None:
        if self.recovered_at is None or self.fault_ended_at is None:
            return None
        return round(self.recovered_at - self.fault_ended_at, 1)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c["pass"] for c in self.checks)

    def event(self, text: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        self.timeline.append((at, text))
        log.info("drill %s: %s", self.scenario, text)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(time_to_detect_s=self.time_to_detect, rto_s=self.rto, recover_after_fault_s=self.recover_after_fault, passed=self.passed)
        data["timeline"] = [
            {"t": self.since_fault(at) if self.fault_started_at else round(at - self.started_at, 1), "event": e} for at, e in sorted(self.timeline)
        ]
        return data


def _utc(at: float | None) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, dt.UTC)


@contextmanager
def signals_abort() -> Iterator[None]:
    """Turn SIGTERM (a CI timeout, `kill`) into an exception, so the fault is removed as on Ctrl-C."""

    def stop(signum: int, _frame: Any) -> None:
        raise DrillAborted(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Probe:
    """Check health every ``interval`` seconds on a thread; remember when it first failed after ``since``."""

    def __init__(self, health: Callable[[], dict[str, Any]], interval: float) -> None:
        self.health, self.interval = health, interval
        self.since: float | None = None
        self.first_fail: float | None = None
        self.failed: str = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-health-probe", daemon=True)

    def start(self) -> _Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.time()
            try:
                doc = self.health()
            except Exception as exc:  # a check that cannot even run (a config that does not load) is a failed check
                doc = {"status": "fail", "checks": {type(exc).__name__: [{"output": str(exc)}]}}
            if doc["status"] == "fail" and self.since is not None and started >= self.since and self.first_fail is None:
                self.first_fail = started
                self.failed = ", ".join(n for n, obs in doc["checks"].items() if any(o.get("status", "fail") == "fail" for o in obs))
            self._stop.wait(max(0.0, self.interval - (time.time() - started)))


class DrillRunner:
    """
    Run scenarios against a started :class:`LocalTarget`.

    :param target: the deployment the drills break
    :param probe_interval: seconds between health probes during a drill
    """

    def __init__(self, target: LocalTarget, *, probe_interval: float = 1.0) -> None:
        self.target = target
        self.probe_interval = probe_interval
        self.warehouse = WarehouseHook(target.config().warehouse.conn_id)

    # -- steady state ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        from resilient_etl.health import check_health
        from resilient_etl.health.checks import default_checks

        cfg = self.target.config()
        checks = default_checks(cfg)
        checks.pop("airflow")  # the local target runs no API server: `airflow dags test` is its scheduler
        return check_health(cfg, checks=checks)

    def breakers(self) -> dict[str, str]:
        from resilient_etl.hooks.shared_state import configured_store
        from resilient_etl.resilience.breaker import breaker_states

        cfg = self.target.config()
        states = breaker_states(configured_store(cfg, self.warehouse), [cfg.breakers.policy(n) for n in ("postcodes_io", "companies_house")])
        return {s["name"]: s["state"] for s in states}

    def steady_state(self) -> dict[str, str]:
        """Return each live hypothesis → ``ok`` or why not (health pass/warn, every breaker closed)."""
        doc = self.health()
        failing = [n for n, obs in doc["checks"].items() if any(o["status"] == "fail" for o in obs)]
        out = {"health": "ok" if doc["status"] != "fail" else f"fail: {', '.join(failing)}"}
        try:
            open_ = {n: s for n, s in self.breakers().items() if s != "closed"}
            out["breakers_closed"] = "ok" if not open_ else ", ".join(f"{n} {s}" for n, s in open_.items())
        except Exception as exc:  # the hypothesis fails with the reason
            out["breakers_closed"] = f"cannot read the breakers: {exc}"
        return out

    # -- one drill -------------------------------------------------------------------------------
    def run(self, name: str, scenario: Scenario, *, timeout: float | None = None) -> DrillResult:
        """
        Run ``scenario``; the fault is removed on every way out (success, failure, Ctrl-C, SIGTERM, timeout).

        :raises DrillRefused: the target was not in its steady state before the fault
        """
        result = DrillResult(name, scenario.title, scenario.category, self.target.name, self.target.spec.executor, time.time())
        self.warehouse.ensure_schema()
        before = self.steady_state()
        result.steady_state_before = before
        if any(v != "ok" for v in before.values()):
            raise DrillRefused(f"{self.target.name} is not in its steady state: " + "; ".join(f"{k}: {v}" for k, v in before.items() if v != "ok"))
        for path in self.target.reset_state():
            result.event(f"left by an earlier drill, moved out of landing: {path}")
        deadline = time.time() + (timeout or max(120.0, scenario.targets.rto_seconds * 3 + scenario.duration_seconds))
        injector = injector_for(scenario.fault, self.target)
        try:
            with signals_abort():
                injector.prepare(result.event)
            self._attempt(name, scenario, injector, result, deadline)
        except DrillSetupError as exc:  # could not be set up: a failed drill that says why (recorded below)
            result.error = f"setup: {exc}"
            result.finished_at = time.time()
        finally:
            injector.cleanup()  # after measuring (a failover's rows are on the standby), before recording
        self._record(result)
        return result

    def _attempt(self, name: str, scenario: Scenario, injector: Injector, result: DrillResult, deadline: float) -> None:
        """Drop the drill's file, drive the fault and the recovery, measure; the fault is removed on every way out."""
        drop = write_sample_csv(
            self.target.folder("landing") / f"drill-{name}-{int(time.time())}.csv", rows=self.target.spec.rows, seed=int(time.time())
        )
        drops = [*injector.earlier_drops, drop]
        result.rows_in = sum(d.rows for d in drops)
        result.event(f"drop {drop.path.name}: {drop.rows} rows written to landing")
        probe = _Probe(self.health, self.probe_interval).start()
        runs: list[PipelineRun] = []
        try:
            with signals_abort():
                self._drive(scenario, injector, probe, runs, result, deadline)
        except (DrillAborted, KeyboardInterrupt) as exc:
            result.error = f"aborted: {exc or 'Ctrl-C'}"
            raise
        except Exception as exc:  # recorded as the drill's failure; the fault is removed below
            result.error = f"{type(exc).__name__}: {exc}"
            log.exception("drill %s failed", name)
        finally:
            if injector.active:
                injector.remove()
                result.fault_ended_at = result.fault_ended_at or time.time()
                result.event("fault removed (drill exit)")
            for run in runs:
                if not self.target.poll(run):
                    self.target.kill(run)
            probe.stop()
        self._measure(scenario, injector, probe, runs, drops, result)

    def _drive(self, scenario: Scenario, injector: Injector, probe: _Probe, runs: list[PipelineRun], result: DrillResult, deadline: float) -> None:
        def inject() -> None:
            now = time.time()
            probe.since = now
            result.fault_started_at = now
            if isinstance(injector, KillInjector):
                injector.run = runs[-1]
            injector.inject()
            result.event(f"fault injected: {scenario.injected_at}", now)

        if scenario.start == "before_run":
            inject()
        runs.append(self.target.start_run())
        result.event(f"run 1 started ({runs[-1].logical_date})")
        if scenario.start == "after_run":
            while not self.target.poll(runs[-1]):
                self._check_deadline(deadline)
                time.sleep(0.2)
            if runs[-1].state != "success":
                raise RuntimeError(f"run 1 ended {runs[-1].state} before the fault: nothing to recover to")
            result.event("run 1 ended: success", runs[-1].ended)
            inject()
        if scenario.start == "during_load":
            wanted = getattr(scenario.fault, "after_chunks", 1) or 1
            while self._chunks(runs[-1]) < wanted:
                if self.target.poll(runs[-1]):
                    raise RuntimeError(f"run 1 ended ({runs[-1].state}) before {wanted} load chunk(s) were committed: no mid-load point to fault")
                self._check_deadline(deadline)
                time.sleep(0.1)
            inject()
        assert result.fault_started_at is not None
        fault_due = result.fault_started_at + scenario.duration_seconds
        recovery_runs = 0
        while True:
            now = time.time()
            if injector.active and now >= fault_due:
                injector.remove()
                result.fault_ended_at = now
                result.event("fault removed", now)
            current = runs[-1]
            if self.target.poll(current):
                if current.ended is not None and not any(e.startswith(f"run {len(runs)} ended") for _, e in result.timeline):
                    result.event(
                        f"run {len(runs)} ended: {current.state or 'no DAG run (parse failed)'}{' (killed)' if current.killed else ''}", current.ended
                    )
                if result.fault_ended_at is not None:
                    recovered = current.state == "success" and current.ended is not None and current.ended >= result.fault_ended_at
                    if recovered:
                        state = self.steady_state()
                        if all(v == "ok" for v in state.values()):
                            result.recovered_at = current.ended
                            result.steady_state_after = state
                            result.event("steady state again: recovered", current.ended)
                            return
                        result.event("run succeeded but " + "; ".join(f"{k}: {v}" for k, v in state.items() if v != "ok"))
                    if recovery_runs >= MAX_RECOVERY_RUNS:
                        raise RuntimeError(f"not recovered after {recovery_runs} runs once the fault ended")
                    recovery_runs += 1
                    if current.state not in ("success", None) and scenario.recovery.mode in ("clear", "failover"):
                        runs.append(self.target.start_run(current.logical_date))
                        result.event(f"runbook {scenario.recovery.runbook}: clear of run {len(runs) - 1} (same run id)")
                    else:
                        runs.append(self.target.start_run())
                        result.event(
                            f"run {len(runs)} started ({'next run' if scenario.recovery.mode == 'automatic' else scenario.recovery.runbook})"
                        )
            self._check_deadline(deadline)
            time.sleep(0.2)

    @staticmethod
    def _check_deadline(deadline: float) -> None:
        if time.time() > deadline:
            raise DrillAborted("the drill's own timeout passed")

    def _chunks(self, run: PipelineRun) -> int:
        """Load chunks committed by ``run`` (read past the proxy: the warehouse may be the fault)."""
        run_id = run.run_id or self.target.dag_run(run.logical_date)[0]
        if run_id is None:
            return 0
        with self.target.direct_engine().connect() as conn:  # the schema was ensured before the drill began
            return int(conn.execute(select(func.count()).select_from(etl_checkpoints).where(etl_checkpoints.c.run_id == run_id)).scalar_one())

    # -- measuring -------------------------------------------------------------------------------
    def _measure(self, scenario: Scenario, injector: Injector, probe: _Probe, runs: list[PipelineRun], drops: list[Any], result: DrillResult) -> None:
        since = result.fault_started_at or result.started_at
        signals: dict[str, float] = {}
        if probe.first_fail is not None:
            signals[f"health ({probe.failed})"] = probe.first_fail
        alerts = [at for at in self.target.sent_alerts() if at >= since]
        if alerts:
            signals["alert"] = alerts[0]
        run_ids = [r.run_id for r in runs if r.run_id]
        with self.target.direct_engine().connect() as conn:
            first_incident = conn.execute(
                select(func.min(incidents.c.last_seen_at)).where(
                    or_(incidents.c.first_seen_at >= _utc(since), incidents.c.last_seen_at >= _utc(since)), incidents.c.run_id.in_(run_ids)
                )
            ).scalar()
            if first_incident is not None:
                signals["incident"] = _aware(first_incident).timestamp()
            names = [d.path.name for d in drops]
            supplier_lines = [
                (r.source_file, r.source_line)
                for r in conn.execute(select(suppliers.c.source_file, suppliers.c.source_line).where(suppliers.c.source_file.in_(names)))
            ]
            lines = supplier_lines + [
                (r.source_file, r.line_number)
                for r in conn.execute(
                    select(quarantine.c.source_file, quarantine.c.line_number).where(
                        quarantine.c.source_file.in_(names), quarantine.c.stage != "extract"
                    )
                )
            ]
            reconciled = conn.execute(
                select(
                    pipeline_runs.c.run_id,
                    pipeline_runs.c.rows_in,
                    pipeline_runs.c.rows_loaded,
                    pipeline_runs.c.rows_quarantined,
                    pipeline_runs.c.rows_pending,
                ).where(pipeline_runs.c.run_id.in_(run_ids))
            ).all()
        # a move keeps the file's mtime; its ctime is when it reached rejected/
        rejected = [p.stat().st_ctime for p in self.target.folder("rejected").iterdir() if p.stat().st_ctime >= since]
        if rejected:
            signals["file rejected"] = min(rejected)
        parse_failed = [r for r in runs if r.state is None and r.ended is not None and "ConfigError" in r.log_file.read_text(errors="replace")]
        if parse_failed:
            signals["DAG import error"] = parse_failed[0].ended  # type: ignore[assignment]
        result.detections = {k: round(v - since, 1) for k, v in sorted(signals.items(), key=lambda kv: kv[1])}
        if signals:
            result.detected_by, result.detected_at = min(signals.items(), key=lambda kv: kv[1])
            result.event(f"detected by {result.detected_by}", result.detected_at)
        # every data line of every drop (line 1 is the header), once, in suppliers or quarantine
        expected = {(d.path.name, n) for d in drops for n in range(2, d.rows + 2)}
        seen: dict[tuple[str, int], int] = {}
        for line in lines:
            seen[line] = seen.get(line, 0) + 1
        result.rows_lost = len(expected - set(seen))
        result.measures = dict(injector.measures)
        if "rows_committed_after_backup" in result.measures:  # the rows the backup could not have, and whether they are back
            last = drops[-1].path.name
            result.measures["rows_rederived"] = len({line for line in supplier_lines if line[0] == last})
        result.rows_duplicated = sum(n - 1 for n in seen.values() if n > 1)
        result.dead_requests = injector.dead_requests()
        result.retries_used = self.target.task_retries(run_ids) + sum(
            1 for r in runs[1:] if r.logical_date in {x.logical_date for x in runs[: runs.index(r)]}
        )
        result.runs = [
            {
                "logical_date": r.logical_date,
                "run_id": r.run_id,
                "state": r.state,
                "killed": r.killed,
                "seconds": round((r.ended or time.time()) - r.started, 1),
            }
            for r in runs
        ]
        result.finished_at = time.time()
        self._judge(scenario, result, reconciled)

    def _judge(self, scenario: Scenario, result: DrillResult, reconciled: list[Any]) -> None:
        t = scenario.targets

        def check(metric: str, target: str, measured: Any, ok: bool) -> None:
            result.checks.append({"metric": metric, "target": target, "measured": measured, "pass": bool(ok)})

        if t.detect_seconds is not None:
            ttd = result.time_to_detect
            check(
                "time to detect (s)",
                f"≤ {t.detect_seconds:g}",
                ttd if ttd is not None else "not detected",
                ttd is not None and ttd <= t.detect_seconds,
            )
        rto = result.rto
        check("RTO (s)", f"≤ {t.rto_seconds:g}", rto if rto is not None else "not recovered", rto is not None and rto <= t.rto_seconds)
        check("rows lost", f"≤ {t.rows_lost}", result.rows_lost, result.rows_lost is not None and result.rows_lost <= t.rows_lost)
        check(
            "rows duplicated",
            f"≤ {t.rows_duplicated}",
            result.rows_duplicated,
            result.rows_duplicated is not None and result.rows_duplicated <= t.rows_duplicated,
        )
        if "rows_committed_after_backup" in result.measures:
            committed, back = result.measures["rows_committed_after_backup"], result.measures.get("rows_rederived", 0)
            check("rows committed after the backup, re-derived from archive/", "all", f"{back} of {committed}", back >= committed > 0)
        if "reconciled" in scenario.steady_state:
            bad = [r.run_id for r in reconciled if r.rows_in != r.rows_loaded + r.rows_quarantined + r.rows_pending]
            check(
                "rows_in = loaded + quarantined + pending",
                "every run",
                f"{len(reconciled) - len(bad)}/{len(reconciled)} runs",
                bool(reconciled) and not bad,
            )
        for hypothesis in ("health", "breakers_closed"):
            if hypothesis in scenario.steady_state:
                state = result.steady_state_after.get(hypothesis, "not reached")
                check(f"steady state after: {hypothesis}", "ok", state, state == "ok")

    def _record(self, result: DrillResult) -> None:
        """Store the result in ``drill_results`` (read past the proxy)."""
        with self.target.direct_engine().begin() as conn:
            conn.execute(insert(drill_results).values(**result_row(result.as_json())))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def result_row(data: dict[str, Any]) -> dict[str, Any]:
    """Return the ``drill_results`` row of a result (:meth:`DrillResult.as_json`)."""

    def at(key: str) -> dt.datetime | None:
        return _utc(data.get(key))

    return {
        "scenario": data["scenario"],
        "target": data["target"],
        "executor": data["executor"],
        "started_at": at("started_at"),
        "fault_started_at": at("fault_started_at"),
        "detected_at": at("detected_at"),
        "detected_by": (data.get("detected_by") or "")[:50] or None,
        "fault_ended_at": at("fault_ended_at"),
        "recovered_at": at("recovered_at"),
        "time_to_detect_s": data.get("time_to_detect_s"),
        "rto_s": data.get("rto_s"),
        "recover_after_fault_s": data.get("recover_after_fault_s"),
        "rows_lost": data.get("rows_lost"),
        "rows_duplicated": data.get("rows_duplicated"),
        "dead_requests": data.get("dead_requests"),
        "retries_used": data.get("retries_used"),
        "passed": bool(data.get("passed")),
        "result": json.dumps(data, default=str),
    }


def write_results(results: list[DrillResult], path: Path) -> None:
    """Write ``results`` as JSON (what ``drill report`` renders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([r.as_json() for r in results], indent=2, default=str) + "\n")
