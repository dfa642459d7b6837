"""The ``resilient-etl-dev`` command: the sandbox APIs, sample files, the local Airflow env, the demo, generated docs."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from resilient_etl.cli import run_command
from resilient_etl.commands.output import emit
from resilient_etl_devtools.sandbox import DEMO_CH_LIMIT


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from resilient_etl_devtools.sandbox.server import Sandbox

    sandbox = Sandbox(
        postcodes_port=args.postcodes_port,
        companies_port=args.companies_port,
        api_keys=tuple(args.api_key),
        ch_limit=args.ch_limit,
        ch_window_seconds=args.ch_window,
    ).start()
    emit(f"postcodes.io sandbox:      {sandbox.postcodes.url}", flush=True)
    emit(f"Companies House sandbox:   {sandbox.companies.url}  (quota {args.ch_limit}/{args.ch_window}s)", flush=True)
    sinks = []
    if args.outbox:
        from resilient_etl_devtools.sandbox.sinks import SlackSink, SmtpSink

        outbox = Path(args.outbox).resolve()
        sinks = [SmtpSink(port=args.smtp_port, outbox=outbox).start(), SlackSink(port=args.slack_port, outbox=outbox).start()]
        emit(
            f"alert sinks:               smtp://127.0.0.1:{args.smtp_port}, http://127.0.0.1:{args.slack_port} "
            f"(smtp_default, slack_alerts) -> {outbox}",
            flush=True,
        )
    emit("fault control: PUT <url>/__sandbox/faults/<endpoint>; Ctrl-C stops", flush=True)
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
    from resilient_etl.commands.progress import progress_lines
    from resilient_etl_devtools.sandbox.data import write_sample_csv

    with progress_lines("sample", total=args.rows) as report:
        drop = write_sample_csv(
            Path(args.path),
            rows=args.rows,
            dirty_share=args.dirty_share,
            seed=args.seed,
            on_progress=lambda done, total: report(f"sample: {done:,}/{total:,} rows", done=done),
        )
    emit(f"wrote {drop.rows} rows to {drop.path} ({len(drop.dirty_lines)} dirty)")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    import shlex

    from resilient_etl_devtools.localenv import airflow_env, connection_env, sink_connection_env
    from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY

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
        emit(f"export {key}={shlex.quote(value)}")
    # The venv's bin first, so `resilient-etl` and `airflow` (and what airflow standalone spawns) resolve.
    emit(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from resilient_etl_devtools.demo import run_demo

    return run_demo(Path(args.project_dir).resolve(), rows=args.rows)


def _cmd_classification(args: argparse.Namespace) -> int:
    from resilient_etl.config import get_config
    from resilient_etl_devtools.docgen import DOC_PATH, render

    text = render(get_config())
    if args.write:
        DOC_PATH.write_text(text, encoding="utf-8")
        emit(f"wrote {DOC_PATH}")
        return 0
    if args.check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run `resilient-etl-dev classification --write`", file=sys.stderr)
            return 1
        emit(f"{DOC_PATH} is up to date")
        return 0
    emit(text)
    return 0


def _cmd_cloud(args: argparse.Namespace) -> int:
    from resilient_etl_devtools.cloud import ADF_PIPELINE, FABRIC_PIPELINE, generated_sql, load, validate_pipeline

    for path, text in generated_sql().items():
        if args.write:
            path.write_text(text)
            emit(f"wrote {path}")
        elif not path.exists() or path.read_text() != text:
            print(f"{path} is stale: run `resilient-etl-dev cloud --write`", file=sys.stderr)
            return 1
    problems = [
        f"{path.name}: {p}" for path, flavour in ((ADF_PIPELINE, "adf"), (FABRIC_PIPELINE, "fabric")) for p in validate_pipeline(load(path), flavour)
    ]
    for problem in problems:
        print(f"INVALID {problem}", file=sys.stderr)
    if not problems:
        emit("cloud/adf/pipeline.json and cloud/fabric/pipeline-content.json are valid; the stored procedures are current")
    return 1 if problems else 0


def _cmd_cluster(args: argparse.Namespace) -> int:
    from resilient_etl.cli import print_rows
    from resilient_etl_devtools.cluster import Cluster, settings_from_env

    settings = settings_from_env(Path(args.state_dir) if args.state_dir else None)
    cluster = Cluster.load(settings.state_dir)
    if args.cluster_action == "up":
        if not cluster.running():  # a first up (or one after down) takes the ports and sizes given now
            cluster = Cluster(_with_options(settings, args))
        return 0 if cluster.up(timeout=args.timeout) else 1
    if args.cluster_action == "down":
        if not cluster.down():
            emit("cluster not running: nothing stopped")
        return 0
    rows = cluster.status()
    print_rows(rows, args.output)
    return 0 if all(r["health"] == "healthy" for r in rows) else 1


def _with_options(settings: Any, args: argparse.Namespace) -> Any:
    import dataclasses

    chosen = {k: getattr(args, k) for k in ("api_port", "workers", "concurrency") if getattr(args, k, None) is not None}
    return dataclasses.replace(settings, **chosen)


def add_cluster_command(sub: Any) -> None:
    """Add ``cluster up|down|status`` to a command line (the ``resilient-etl`` entry point calls this)."""
    from resilient_etl.cli import add_output_argument

    cluster = sub.add_parser(
        "cluster",
        help="a CeleryExecutor deployment on this machine: PostgreSQL metadata DB, Redis broker, two workers, sandbox APIs (exit 1 unless healthy)",
        description=(
            "up: start every component not running (a second up starts nothing) and wait until all are healthy; "
            "down: stop exactly what up started; status: each component with its PID and health. "
            "State, secrets and logs live in --state-dir (default $RESILIENT_ETL_CLUSTER_DIR, else .cluster/ in the checkout). "
            "Exit codes: 0 healthy, 1 not healthy."
        ),
    )
    cluster.add_argument("cluster_action", choices=["up", "down", "status"])
    cluster.add_argument("--state-dir", default=None, help="where the cluster keeps its state (default: .cluster/)")
    cluster.add_argument("--api-port", type=int, default=None, help="API server port for a new cluster (default 8080)")
    cluster.add_argument("--workers", type=int, default=None, help="Celery workers for a new cluster (default 2)")
    cluster.add_argument("--concurrency", type=int, default=None, help="task slots per worker (default 2)")
    cluster.add_argument("--timeout", type=float, default=240.0, help="up: seconds to wait for health (default 240)")
    add_output_argument(cluster)
    cluster.set_defaults(func=_cmd_cluster)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    parser = argparse.ArgumentParser(
        prog="resilient-etl-dev",
        description="Development tools: the sandbox APIs and alert sinks, sample files, the local Airflow env, the demo, the generated classification doc.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="serve the postcodes.io and Companies House sandboxes on loopback")
    sandbox.add_argument("--postcodes-port", type=int, default=8701)
    sandbox.add_argument("--companies-port", type=int, default=8702)
    sandbox.add_argument("--api-key", action="append", default=None, help="accepted Companies House key (repeatable)")
    sandbox.add_argument("--ch-limit", type=int, default=600, help="Companies House requests per window (the real API's: 600)")
    sandbox.add_argument(
        "--demo-quota",
        dest="ch_limit",
        action="store_const",
        const=DEMO_CH_LIMIT,
        help=f"the demo's raised quota ({DEMO_CH_LIMIT:,} per window), as `make demo` and `make standalone` use",
    )
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

    classification = sub.add_parser("classification", help="print (or --write, --check) docs/error-classification.md")
    mode = classification.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate the file")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    classification.set_defaults(func=_cmd_classification)

    cloud = sub.add_parser(
        "cloud", help="validate cloud/adf and cloud/fabric pipelines; check (or --write) the generated stored procedure (exit 1 when one fails)"
    )
    cloud.add_argument("--write", action="store_true", help="regenerate the stored procedures in cloud/adf/sql/")
    cloud.set_defaults(func=_cmd_cloud)

    demo = sub.add_parser("demo", help="run company_enrichment end to end on SQLite against the sandboxes")
    demo.add_argument("--project-dir", default=".", help="the repository (default: current directory)")
    demo.add_argument("--rows", type=int, default=1000)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line."""
    args: Any = build_parser().parse_args(argv)
    if getattr(args, "api_key", False) is None:
        from resilient_etl_devtools.sandbox.companies_app import DEFAULT_API_KEY

        args.api_key = [DEFAULT_API_KEY]
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
