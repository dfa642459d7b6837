"""
The console's charts, drawn on the server as SVG by matplotlib (no script, no CDN: they render offline
and in a screenshot). The object API only: pyplot's global state is not safe in a threaded server.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from matplotlib import rc_context
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

STATE_COLOURS = {"closed": "#2e7d32", "half-open": "#f9a825", "open": "#c62828"}
SERIES_COLOURS = {"loaded": "#2e7d32", "quarantined": "#c62828", "pending": "#f9a825"}


# Text as <text> in the browser's own font, not one path per glyph: a third of the size and of the time.
SVG_RC = {"svg.fonttype": "none", "font.family": "sans-serif"}


def _svg(fig: Figure) -> str:
    """Return ``fig`` as an inline ``<svg>`` element (the XML prologue dropped)."""
    out = io.StringIO()
    with rc_context(SVG_RC):
        FigureCanvasSVG(fig).print_svg(out, metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def breaker_timeline(names: Sequence[str], initial: dict[str, str], events: Sequence[dict[str, Any]], *, start: dt.datetime, end: dt.datetime) -> str:
    """
    Draw each breaker's state over ``start``..``end`` as a coloured band (green closed, amber half-open, red open).

    :param names: the breakers, one row each
    :param initial: each breaker's state at ``start``
    :param events: ``breaker_events`` rows (``name``, ``to_state``, ``at``) in time order
    """
    height = 0.9 + 0.45 * len(names)
    fig = Figure(figsize=(9, height), dpi=100)
    # fixed margins: a constrained layout measures every label and costs more than the drawing
    fig.subplots_adjust(left=0.16, right=0.98, bottom=0.5 / height, top=1 - 0.3 / height)
    ax = fig.add_subplot()
    left, right = date2num(start), date2num(end)
    for row, name in enumerate(names):
        state, since = initial.get(name, "closed"), left
        changes = [(date2num(e["at"]), e["to_state"]) for e in events if e["name"] == name]
        for at, new in [*changes, (right, None)]:
            if at > since:
                ax.broken_barh([(since, at - since)], (row - 0.35, 0.7), facecolors=STATE_COLOURS.get(state, "#757575"))
            since = max(since, at)
            state = new or state
    ax.set_yticks(range(len(names)), labels=list(names))
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(left, right)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_title("Breaker state (green closed, amber half-open, red open), UTC", fontsize=9, loc="left")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _svg(fig)


def reconciliation_bars(runs: Sequence[dict[str, Any]]) -> str:
    """Draw the rows loaded / quarantined / pending per run as stacked bars, oldest run on the left."""
    fig = Figure(figsize=(9, 3), dpi=100)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.3, top=0.9)
    ax = fig.add_subplot()
    xs = list(range(len(runs)))
    bottom = [0] * len(runs)
    for series, column in (("loaded", "rows_loaded"), ("quarantined", "rows_quarantined"), ("pending", "rows_pending")):
        values = [int(r[column] or 0) for r in runs]
        ax.bar(xs, values, bottom=bottom, color=SERIES_COLOURS[series], label=series, width=0.8)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(xs, labels=[r["finished_at"].strftime("%m-%d %H:%M") for r in runs], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("rows")
    ax.set_title(f"Reconciliation of the last {len(runs)} runs", fontsize=9, loc="left")
    if runs:
        ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _svg(fig)
