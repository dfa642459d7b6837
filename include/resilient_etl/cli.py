"""The ``resilient-etl`` command: sandbox, demo, sample, env, breakers, config check."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from resilient_etl.errors import ConfigError
from resilient_etl.sandbox import DEMO_CH_LIMIT


def _cmd_config_check(args: argparse.Namespace) -> int:
    from resilient_etl.config import config_path, load_config

    path = Path(args.path) if args.path else config_path()
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"INVALID: {exc}", file=sys.stderr)
        return 1
    from resilient_etl.config import ENVIRONMENT_ENV, OVERRIDE_PREFIX

    layers = [str(path)]
    if os.environ.get(ENVIRONMENT_ENV):
        layers.append(f"{path.stem}.{os.environ[ENVIRONMENT_ENV]}{path.suffix} ({ENVIRONMENT_ENV})")
    layers += sorted(k for k in os.environ if k.startswith(OVERRIDE_PREFIX))
    print(f"# valid. Layers: {' + '.join(layers)}. Effective values:")
    print(yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False), end="")
    return 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from resilient_etl.sandbox.server import Sandbox

    sandbox = Sandbox(
        postcodes_port=args.postcodes_port,
        companies_port=args.companies_port,
        api_keys=tuple(args.api_key),
        ch_limit=args.ch_limit,
        ch_window_seconds=args.ch_window,
    ).start()
    print(f"postcodes.io sandbox:      {sandbox.postcodes.url}", flush=True)
    print(f"Companies House sandbox:   {sandbox.companies.url}  (quota {args.ch_limit}/{args.ch_window}s)", flush=True)
    sinks = []
    if args.outbox:
        from resilient_etl.sandbox.sinks import SlackSink, SmtpSink

        outbox = Path(args.outbox).resolve()
        sinks = [SmtpSink(port=args.smtp_port, outbox=outbox).start(), SlackSink(port=args.slack_port, outbox=outbox).start()]
        print(f"alert sinks:               smtp://127.0.0.1:{args.smtp_port}, http://127.0.0.1:{args.slack_port} "
              f"(smtp_default, slack_alerts) -> {outbox}", flush=True)
    print("fault control: PUT <url>/__sandbox/faults/<endpoint>; Ctrl-C stops", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    for sink in sinks:
        sink.stop()
    sandbox.stop()
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from resilient_etl.sandbox.data import write_sample_csv

    drop = write_sample_csv(Path(args.path), rows=args.rows, dirty_share=args.dirty_share, seed=args.seed)
    print(f"wrote {drop.rows} rows to {drop.path} ({len(drop.dirty_lines)} dirty)")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    import shlex

    from resilient_etl.localenv import airflow_env, connection_env, sink_connection_env
    from resilient_etl.sandbox.companies_app import DEFAULT_API_KEY

    project = Path(args.project_dir).resolve()
    env = {
        **airflow_env(project / ".airflow", project_dir=project),
        **connection_env(
            postcodes_url=f"http://127.0.0.1:{args.postcodes_port}",
            companies_url=f"http://127.0.0.1:{args.companies_port}",
            api_key=DEFAULT_API_KEY,
            warehouse={"conn_type": "sqlite", "host": str(project / "data" / "warehouse.db")},
        ),
        **sink_connection_env(smtp_port=args.smtp_port, slack_port=args.slack_port),
    }
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")
    # The venv's bin first, so `resilient-etl` and `airflow` (and what airflow standalone spawns) resolve.
    print(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    return 0


EXIT_SHARED_STATE_UNAVAILABLE = 3  # `breakers`: 0 all closed, 1 one is open, 3 Redis (breaker_store) unreachable


def _cmd_breakers(args: argparse.Namespace) -> int:
    import datetime as dt
    import getpass
    import logging
    import time

    from resilient_etl.config import get_config
    from resilient_etl.errors import utc_clock
    from resilient_etl.hooks.warehouse import WarehouseHook
    from resilient_etl.resilience.breaker import BreakerEventRecorder, breaker_states, force_state
    from resilient_etl.resilience.storage import CLOSED, OPEN, breaker_store

    cfg = get_config()
    warehouse = WarehouseHook(cfg.warehouse.conn_id)
    warehouse.ensure_schema()
    store = breaker_store(cfg.shared_state.store, warehouse=warehouse, redis_conn_id=cfg.shared_state.redis_conn_id)
    policies = {name: cfg.breakers.policy(name) for name in ("postcodes_io", "companies_house")}
    action = getattr(args, "breaker_action", None)
    if action is None:
        # The store's own warning would be a second line: this command says it once, with its exit code.
        logging.getLogger("resilient_etl.resilience.storage").disabled = True
        states = breaker_states(store, list(policies.values()))
        print(json.dumps(states, indent=2))
        if getattr(store, "degraded", None) is not None:
            print(f"resilient-etl breakers: shared-state store {store.what} unavailable; these are the warehouse "
                  "tables the workers fall back to (runbook: shared-state-unavailable)", file=sys.stderr)
            return EXIT_SHARED_STATE_UNAVAILABLE
        return 0 if all(s["state"] == "closed" for s in states) else 1
    if args.name not in policies:
        print(f"resilient-etl breakers {action}: no breaker {args.name!r} (breakers: {', '.join(policies)})", file=sys.stderr)
        return 2
    new = CLOSED if action == "reset" else OPEN
    now = time.time()
    hold = args.minutes * 60 if action == "open" else 0.0
    old = force_state(store, policies[args.name], new, now=now, hold_seconds=hold)
    who = args.by or getpass.getuser()
    reason = f"manual {action} by {who}" + (f" until {utc_clock(now + hold)}" if action == "open" else "") + (f": {args.reason}" if args.reason else "")
    BreakerEventRecorder(warehouse).record(args.name, old, new, reason)
    logging.getLogger("resilient_etl.resilience.breaker").warning("Circuit breaker %s: %s -> %s (%s)", args.name, old, new, reason)
    print(f"circuit breaker {args.name}: {old} -> {new} ({reason}) at {dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec='seconds')}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from resilient_etl.demo import run_demo

    return run_demo(Path(args.project_dir).resolve(), rows=args.rows)


def _cmd_classification(args: argparse.Namespace) -> int:
    from resilient_etl.config import get_config
    from resilient_etl.matrix_doc import DOC_PATH, render

    text = render(get_config())
    if args.write:
        DOC_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {DOC_PATH}")
        return 0
    if args.check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run `resilient-etl classification --write`", file=sys.stderr)
            return 1
        print(f"{DOC_PATH} is up to date")
        return 0
    print(text)
    return 0


def _cmd_incidents(args: argparse.Namespace) -> int:
    from resilient_etl import incidents as store
    from resilient_etl.notifications.alerts import Alerter

    alerter = Alerter()
    try:
        if args.action == "list":
            alerter.record_spooled()  # alerts sent while the warehouse was down become incidents now
            with alerter.warehouse.begin() as conn:
                rows = store.active(conn)
            for i in rows:
                print(f"#{i.id}\t{i.status}\t{i.severity}\t{i.category}\t{i.dag_id}.{i.task_id or '*'}\t"
                      f"x{i.occurrences}\tsince {i.first_seen_at:%Y-%m-%d %H:%M} UTC\tlevel {i.escalation_level}\t{i.detail or ''}")
            if not rows:
                print("no open incidents")
            return 0
        if args.id is None:
            print(f"incidents {args.action}: an incident id is required", file=sys.stderr)
            return 2
        if args.action == "ack":
            incident = alerter.acknowledge(args.id)
        else:
            incident = alerter.resolve(args.id, args.note)
    except (LookupError, ValueError) as exc:
        print(f"incidents {args.action}: {exc}", file=sys.stderr)
        return 2
    print(f"incident #{incident.id} {incident.status}")
    return 0


def _cmd_health(args: argparse.Namespace) -> int:
    from resilient_etl.health import EXIT_CODES, check_health

    doc = check_health()
    print(json.dumps(doc, indent=2))
    return EXIT_CODES[doc["status"]]


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    parser = argparse.ArgumentParser(prog="resilient-etl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="configuration commands")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file and print its effective values")
    check.add_argument("path", nargs="?", help="config file (default: $RESILIENT_ETL_CONFIG or config/resilience.yaml)")
    check.set_defaults(func=_cmd_config_check)

    sandbox = sub.add_parser("sandbox", help="serve the postcodes.io and Companies House sandboxes on loopback")
    sandbox.add_argument("--postcodes-port", type=int, default=8701)
    sandbox.add_argument("--companies-port", type=int, default=8702)
    sandbox.add_argument("--api-key", action="append", default=None, help="accepted Companies House key (repeatable)")
    sandbox.add_argument("--ch-limit", type=int, default=600, help="Companies House requests per window (the real API's: 600)")
    sandbox.add_argument("--demo-quota", dest="ch_limit", action="store_const", const=DEMO_CH_LIMIT,
                         help=f"the demo's raised quota ({DEMO_CH_LIMIT:,} per window), as `make demo` and `make standalone` use")
    sandbox.add_argument("--ch-window", type=float, default=300, help="Companies House quota window, seconds")
    sandbox.add_argument("--outbox", default=None, help="also run the local alert sinks (SMTP, Slack webhook), writing each message here")
    sandbox.set_defaults(func=_cmd_sandbox)

    sample = sub.add_parser("sample", help="write a sample supplier CSV matching the sandbox data")
    sample.add_argument("path")
    sample.add_argument("--rows", type=int, default=1000)
    sample.add_argument("--dirty-share", type=float, default=0.03)
    sample.add_argument("--seed", type=int, default=20261126)
    sample.set_defaults(func=_cmd_sample)

    env = sub.add_parser("env", help="print `export` lines for a local Airflow against the sandbox (eval them)")
    env.add_argument("--project-dir", default=".")
    env.add_argument("--postcodes-port", type=int, default=8701)
    env.add_argument("--companies-port", type=int, default=8702)
    for local in (sandbox, env):
        local.add_argument("--smtp-port", type=int, default=8703, help="the local SMTP sink (smtp_default)")
        local.add_argument("--slack-port", type=int, default=8704, help="the local Slack-webhook sink (slack_alerts)")
    env.set_defaults(func=_cmd_env)

    breakers = sub.add_parser("breakers", help="print every circuit breaker's shared state (exit 1 unless all closed, 3 when Redis is unreachable); reset or open one")
    breakers.set_defaults(func=_cmd_breakers)
    breakers_sub = breakers.add_subparsers(dest="breaker_action")
    for verb, text in (("reset", "force a breaker closed now (the API is known to be back); recorded in breaker_events"),
                       ("open", "force a breaker open for maintenance: calls use the fallbacks until --minutes pass")):
        forced = breakers_sub.add_parser(verb, help=text)
        forced.add_argument("name", help="postcodes_io or companies_house")
        forced.add_argument("--reason", default="", help="why, kept with the change")
        forced.add_argument("--by", default=None, help="who (default: the login name)")
        if verb == "open":
            forced.add_argument("--minutes", type=float, default=60.0, help="until the first probe (default 60)")

    health = sub.add_parser("health", help="check every dependency; print application/health+json (exit 0 pass, 1 warn, 2 fail)")
    health.set_defaults(func=_cmd_health)

    classification = sub.add_parser("classification", help="print (or --write, --check) docs/error-classification.md")
    mode = classification.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate the file")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    classification.set_defaults(func=_cmd_classification)

    incidents = sub.add_parser("incidents", help="list, acknowledge or resolve incidents")
    incidents.add_argument("action", choices=["list", "ack", "resolve"])
    incidents.add_argument("id", type=int, nargs="?")
    incidents.add_argument("--note", help="resolution note, sent with the recovery message")
    incidents.set_defaults(func=_cmd_incidents)

    demo = sub.add_parser("demo", help="run company_enrichment end to end on SQLite against the sandboxes")
    demo.add_argument("--project-dir", default=".", help="the repository (default: current directory)")
    demo.add_argument("--rows", type=int, default=1000)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    args: Any = build_parser().parse_args(argv)
    if getattr(args, "api_key", False) is None:
        from resilient_etl.sandbox.companies_app import DEFAULT_API_KEY

        args.api_key = [DEFAULT_API_KEY]
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as `yes | head` does, and keep Python's
        # exit-time flush from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
