"""Progress of a long command: a bar on a terminal, the same lines plain in a log or a pipe."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from resilient_etl.commands.output import is_terminal

Report = Callable[..., None]  # report(line, done=None): print the line; done (of the total) moves the bar, else one more step


@contextmanager
def progress_lines(label: str, *, total: int | None = None, stream: TextIO | None = None) -> Iterator[Report]:
    """
    Yield ``report(line, done=None)`` for a command's progress lines (``[3/17] drill …``, ``[2/5] warehouse: …``).

    On a terminal each line is printed above a progress bar (done/total, elapsed, time to go); anywhere
    else the lines alone are written, flushed, so a log or ``| tee`` reads the same numbers.

    :param label: what is being done, left of the bar
    :param total: the number of steps, when known (else the bar pulses and counts steps)
    :param stream: where progress goes (default: stderr; results stay on stdout)
    """
    out = stream or sys.stderr
    if not is_terminal(out):

        def plain(line: str, done: int | None = None) -> None:
            print(line, file=out, flush=True)

        yield plain
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(file=out, force_terminal=True)) as bar:
        task = bar.add_task(label, total=total)

        def report(line: str, done: int | None = None) -> None:
            bar.console.print(line, markup=False, highlight=False)
            if done is None:
                bar.advance(task)
            else:
                bar.update(task, completed=done)

        yield report
