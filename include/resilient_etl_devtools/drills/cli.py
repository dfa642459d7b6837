"""``resilient-etl drill`` and ``resilient-etl proxy`` (added to the runtime CLI by entry points)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from resilient_etl.commands.output import emit
from resilient_etl_devtools.paths import PROJECT_ROOT

EXIT_FAILED, EXIT_REFUSED = 1, 3
DEFAULT_STATE_DIR = PROJECT_ROOT / ".drills"
RESULTS_FILE = PROJECT_ROOT / "docs" / "drill-results.json"
PROXY_CONTROL_ENV = "RESILIENT_ETL_PROXY_CONTROL"


def _cmd_drill(args: argparse.Namespace) -> int:
    from resilient_etl.cli import print_rows
    from resilient_etl.exceptions import ConfigError
    from resilient_etl_devtools.drills.catalogue import load_catalogue

    try:
        catalogue = load_catalogue(Path(args.catalogue) if args.catalogue else None)
    except ConfigError as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return 2
    if args.drill_action == "list":
        rows = [
            {
                "scenario": name,
                "category": s.category,
                "fault": s.fault.kind,
                "injected at": s.injected_at,
                "seconds": s.duration_seconds,
                "recovery": f"{s.recovery.mode} ({s.recovery.runbook})",
                "executors": ",".join(s.executors),
                "fast": s.fast,
            }
            for name, s in catalogue.scenarios.items()
        ]
        print_rows(rows, args.output)
        return 0
    if args.drill_action == "report":
        from resilient_etl_devtools.drills.report import write_report

        for path in write_report(catalogue, Path(args.results)):
            emit(f"wrote {path}")
        return 0
    return _run_drills(args, catalogue)


def _run_drills(args: argparse.Namespace, catalogue: Any) -> int:
    from resilient_etl.cli import print_rows
    from resilient_etl.exceptions import ConfigError
    from resilient_etl_devtools.drills.runner import DrillAborted, DrillRefused, signals_abort, write_results
    from resilient_etl_devtools.drills.target import DRILL_DATABASE, LocalTarget

    if os.environ.get("RESILIENT_ETL_ENV") == "prod":
        print("drill: refused: RESILIENT_ETL_ENV is prod; drills inject real faults and never run on production", file=sys.stderr)
        return EXIT_REFUSED
    try:
        target_spec = catalogue.target(args.target)
        if args.all:
            names = list(catalogue.scenarios)
        elif args.fast:
            names = [n for n, s in catalogue.scenarios.items() if s.fast]
        elif args.name:
            names = [args.name]
            catalogue.scenario(args.name)
        else:
            print("drill run: name a scenario, or --all, or --fast", file=sys.stderr)
            return 2
    except ConfigError as exc:
        refused = (exc.field or "").endswith(".drillable")
        print(f"drill: {'refused: ' if refused else ''}{exc}", file=sys.stderr)
        return EXIT_REFUSED if refused else 2
    skipped = [n for n in names if target_spec.executor not in catalogue.scenarios[n].executors]
    names = [n for n in names if n not in skipped]
    target = LocalTarget(args.target, target_spec, Path(args.state_dir), database=args.database or DRILL_DATABASE, redis_db=args.redis_db)
    results = []
    started = time.time()
    try:
        # SIGTERM unwinds like Ctrl-C (every fault is removed on the way out)
        with signals_abort():
            _run_all(target, names, catalogue, args, results, started)
    except DrillRefused as exc:
        print(f"drill: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (DrillAborted, KeyboardInterrupt) as exc:
        print(f"drill: aborted ({exc or 'Ctrl-C'}); every fault was removed", file=sys.stderr)
        return 130
    finally:
        target.stop()
        if results:
            out = Path(args.record) if args.record else target.state_dir / "results" / f"{int(started)}.json"
            write_results(results, out)
            print(f"results: {out} ({len(results)} drills, {time.time() - started:.0f} s)", file=sys.stderr)
    for name in skipped:
        print(f"skipped {name}: not declared for the {target_spec.executor} executor", file=sys.stderr)
    rows = [
        {
            "scenario": r.scenario,
            "passed": r.passed,
            "detected_by": r.detected_by or "",
            "time_to_detect_s": r.time_to_detect,
            "rto_s": r.rto,
            "rows_lost": r.rows_lost,
            "rows_duplicated": r.rows_duplicated,
            "dead_requests": r.dead_requests,
            "retries_used": r.retries_used,
            "error": r.error or "",
        }
        for r in results
    ]
    print_rows(rows, args.output)
    return 0 if all(r.passed for r in results) else EXIT_FAILED


def _run_all(target: Any, names: list[str], catalogue: Any, args: argparse.Namespace, results: list[Any], started: float) -> None:
    from resilient_etl.commands.progress import progress_lines
    from resilient_etl_devtools.drills.runner import DrillRunner

    target.start()
    runner = DrillRunner(target, probe_interval=args.probe_interval)
    with progress_lines("drills", total=len(names)) as report:
        for i, name in enumerate(names, 1):
            report(f"[{i}/{len(names)}] drill {name}: {catalogue.scenarios[name].title} …", done=i - 1)
            result = runner.run(name, catalogue.scenarios[name])
            results.append(result)
            elapsed = time.time() - started
            eta = elapsed / i * (len(names) - i)
            report(
                f"[{i}/{len(names)}] drill {name}: {'PASS' if result.passed else 'FAIL'} detect {result.time_to_detect} s, RTO {result.rto} s, "
                f"lost {result.rows_lost}, doubled {result.rows_duplicated}{' - ' + result.error if result.error else ''} "
                f"({elapsed:.0f} s elapsed, {eta:.0f} s to go)",
                done=i,
            )


def add_drill_command(sub: Any) -> None:
    """Add ``drill list|run|report`` to a command line (the ``resilient-etl`` entry point calls this)."""
    from resilient_etl.cli import add_exit_codes, add_output_argument

    drill = sub.add_parser(
        "drill",
        help="failure drills from config/drills.yaml: list them, run one or all (measured), write docs/drills.md",
        description=(
            "list: the scenario catalogue. run NAME | --fast | --all: check the target's steady state (refused, exit 3, "
            "when it is unhealthy or not drillable), inject the fault, drive the pipeline, remove the fault (always: also "
            "on failure, Ctrl-C, SIGTERM and timeout), recover, check the steady state again; exit 0 when every target "
            "was met, 1 when one was missed. report: docs/drills.md (and the measured times in docs/recovery.md and "
            "docs/disaster-recovery.md) from the recorded results."
        ),
    )
    drill.add_argument("drill_action", choices=["list", "run", "report"])
    drill.add_argument("name", nargs="?", help="run: the scenario")
    drill.add_argument("--all", action="store_true", help="run: every scenario of the target's executor")
    drill.add_argument("--fast", action="store_true", help="run: the fast subset (fast: true) that CI runs")
    drill.add_argument("--target", default="local", help="run: the drill target in the catalogue (default local)")
    drill.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="run: the local target's state (default .drills/)")
    drill.add_argument("--database", default=None, help="run: the local target's PostgreSQL warehouse database (default resilient_etl_drills)")
    drill.add_argument("--redis-db", type=int, default=14, help="run: the local target's Redis database for shared state (default 14)")
    drill.add_argument("--record", default=None, help=f"run: write the results here (e.g. {RESULTS_FILE.relative_to(PROJECT_ROOT)})")
    drill.add_argument("--results", default=str(RESULTS_FILE), help="report: the recorded results to render")
    drill.add_argument("--catalogue", default=None, help="the catalogue (default config/drills.yaml)")
    drill.add_argument("--probe-interval", type=float, default=1.0, help="run: seconds between health probes (default 1)")
    add_output_argument(drill)
    add_exit_codes(
        drill,
        {
            0: "every target met (or listed, reported)",
            EXIT_FAILED: "a target was missed",
            2: "bad arguments",
            EXIT_REFUSED: "refused: the target is unhealthy, not drillable or production",
            130: "aborted (Ctrl-C, SIGTERM): every fault removed",
        },
    )
    drill.set_defaults(func=_cmd_drill)


# -- proxy -----------------------------------------------------------------------------------------
def _control(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{args.control.rstrip('/')}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"proxy: {json.loads(exc.read()).get('error', exc)}") from exc
    except OSError as exc:
        raise SystemExit(f"proxy: no proxy server at {args.control} ({exc}); start one with `resilient-etl proxy serve`") from exc


def _cmd_proxy(args: argparse.Namespace) -> int:
    from resilient_etl.cli import print_rows
    from resilient_etl_devtools.drills.proxy import FaultProxy, ProxyControl

    if args.proxy_action == "serve":
        control = ProxyControl(int(args.control.rsplit(":", 1)[1]))
        for spec in args.proxy or []:
            name, listen, upstream = spec.split("=", 2)
            host, _, port = upstream.rpartition(":")
            control.add(FaultProxy(name, (host, int(port)), int(listen)))
        for p in control.proxies.values():
            emit(f"proxy {p.name}: 127.0.0.1:{p.port} -> {p.upstream[0]}:{p.upstream[1]}", flush=True)
        emit(f"control API on 127.0.0.1:{control.port} (Ctrl-C stops; every fault is removed)", flush=True)
        try:
            control.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0
    if args.proxy_action == "list":
        rows = [{k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in p.items()} for p in _control(args, "GET", "/proxies")]
        print_rows(rows, args.output)
        return 0
    if args.proxy_action == "add":
        print_rows([_control(args, "POST", "/proxies", {"name": args.name, "upstream": args.upstream, "listen_port": args.listen_port})], args.output)
        return 0
    if args.proxy_action == "clear":
        proxy = _control(args, "DELETE", f"/proxies/{args.name}/toxic")
        emit(f"proxy {proxy['name']}: no fault")
        return 0
    toxic = {
        "type": args.proxy_action,
        "latency_ms": args.latency_ms,
        "jitter_ms": args.jitter_ms,
        "rate_kb": args.rate_kb,
        "timeout_ms": args.timeout_ms,
    }
    proxy = _control(args, "POST", f"/proxies/{args.name}/toxic", toxic)
    emit(f"proxy {proxy['name']}: {args.proxy_action} {json.dumps({k: v for k, v in proxy['toxic'].items() if v and k != 'type'})}")
    return 0


def add_proxy_command(sub: Any) -> None:
    """Add ``proxy serve|list|add|latency|bandwidth|timeout|reset_peer|down|clear`` (Toxiproxy's verbs)."""
    from resilient_etl.cli import add_output_argument
    from resilient_etl_devtools.drills.proxy import TOXICS

    proxy = sub.add_parser(
        "proxy",
        help="a TCP fault proxy (Toxiproxy's verbs): put latency, a bandwidth cap, a stall, resets or an outage between a worker and a service",
        description=(
            "serve: run proxies and their control API until Ctrl-C (faults are removed on exit). add NAME --upstream HOST:PORT: "
            "another proxy. latency | bandwidth | timeout | reset_peer | down NAME: put that fault on NAME. clear NAME: remove it. "
            f"list: every proxy, its fault and counts. The control API address comes from --control or ${PROXY_CONTROL_ENV}."
        ),
    )
    proxy.add_argument("proxy_action", choices=["serve", "list", "add", *TOXICS, "clear"])
    proxy.add_argument("name", nargs="?", help="the proxy (e.g. postcodes_io, warehouse)")
    proxy.add_argument(
        "--control", default=os.environ.get(PROXY_CONTROL_ENV, "http://127.0.0.1:8474"), help="the control API (default 127.0.0.1:8474)"
    )
    proxy.add_argument("--proxy", action="append", help="serve: NAME=LISTEN_PORT=UPSTREAM_HOST:PORT (repeatable)")
    proxy.add_argument("--upstream", help="add: HOST:PORT")
    proxy.add_argument("--listen-port", type=int, default=0, help="add: the loopback port (default: a free one)")
    proxy.add_argument("--latency-ms", type=int, default=0)
    proxy.add_argument("--jitter-ms", type=int, default=0)
    proxy.add_argument("--rate-kb", type=int, default=0, help="bandwidth: KB/s")
    proxy.add_argument("--timeout-ms", type=int, default=0, help="timeout: close the stalled connection after this (0: never)")
    add_output_argument(proxy)
    proxy.set_defaults(func=_cmd_proxy)
