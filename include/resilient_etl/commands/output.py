"""Output of the listing commands, as Airflow's CLI prints it (``-o table|json|yaml|plain``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import yaml

OUTPUT_FORMATS = ("table", "json", "yaml", "plain")
_RESULTS: list[TextIO] = []  # the stream results go to while :func:`results_on_stdout` is in force


def results() -> TextIO:
    """Return where a command writes its results: the real stdout (logs are on stderr meanwhile)."""
    return _RESULTS[-1] if _RESULTS else sys.stdout


def emit(*values: Any, end: str = "\n", flush: bool = False) -> None:
    """Print a command's result (``print`` for results; logs and messages go to stderr)."""
    print(*values, end=end, file=results(), flush=flush)


@contextmanager
def results_on_stdout() -> Iterator[None]:
    """
    Keep stdout for a command's results (``-o json`` piped into ``jq``, ``eval "$(resilient-etl-dev env)"``)
    and send everything else written to it, Airflow's log lines among them, to stderr.

    Loggers write to file descriptor 1 through streams they picked up on their own, so descriptor 1
    is pointed at stderr meanwhile, and :func:`emit` writes to a stream on the real stdout. Output
    already redirected in-process (a test's capsys) is left alone.
    """
    try:
        real = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # not a file descriptor: captured
        real = False
    if not real:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    stream = open(saved, "w", buffering=1, encoding=sys.stdout.encoding, errors=sys.stdout.errors, closefd=False)
    _RESULTS.append(stream)
    try:
        yield
    finally:
        _RESULTS.remove(stream)
        try:
            stream.flush()
        except BrokenPipeError:  # the reader went away: run_command reports it
            pass
        finally:
            stream.close()
            os.dup2(saved, 1)
            os.close(saved)


def is_terminal(stream: TextIO) -> bool:
    """Return whether ``stream`` is a terminal (a captured or closed stream is not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def default_output() -> str:
    """Return the format a person expects: a table on a terminal, JSON when the output is piped or captured."""
    return "table" if is_terminal(results()) else "json"


def add_output_argument(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """
    Add Airflow's ``-o/--output table|json|yaml|plain`` to a listing command.

    :param default: a fixed default; None (the usual) picks :func:`default_output` when the command runs
    """
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        default=default,
        help=f"output format (default: {default or 'table on a terminal, json when piped'})",
    )


def add_exit_codes(parser: argparse.ArgumentParser, codes: dict[int, str]) -> None:
    """Document a command's exit codes at the end of its ``--help`` (a line each where the help keeps line breaks)."""
    if issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter):
        text = "exit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in sorted(codes.items()))
    else:  # the default formatter re-wraps the epilog: one paragraph
        text = "exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in sorted(codes.items())) + "."
    parser.epilog = f"{parser.epilog}\n\n{text}" if parser.epilog else text


def print_rows(rows: list[dict[str, Any]], output: str | None, *, title: str | None = None) -> None:
    """
    Print ``rows`` as Airflow's CLI does for ``-o``.

    :param rows: one mapping per row, all with the same keys
    :param output: ``table`` (a rich table), ``json``, ``yaml`` or ``plain`` (tab-separated, no header); None: :func:`default_output`
    :param title: the table's caption (table output only)
    """
    output = output or default_output()
    if output == "json":
        emit(json.dumps(rows, indent=2, default=str))
    elif output == "yaml":
        emit(yaml.safe_dump(json.loads(json.dumps(rows, default=str)), sort_keys=False), end="")
    elif not rows:
        emit("" if output == "plain" else "No data found")
    elif output == "plain":
        emit("\n".join("\t".join("" if v is None else str(v) for v in row.values()) for row in rows))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, header_style="bold", show_lines=False)
        for key in rows[0]:
            table.add_column(str(key), overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        stream = results()
        Console(file=stream, width=None if is_terminal(stream) else 200, soft_wrap=False).print(table)
