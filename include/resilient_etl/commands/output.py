"""Output of the listing commands, as Airflow's CLI prints it (``-o table|json|yaml|plain``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

OUTPUT_FORMATS = ("table", "json", "yaml", "plain")


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    """Add Airflow's ``-o/--output table|json|yaml|plain`` to a listing command."""
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table", help="output format (default: table)")


def print_rows(rows: list[dict[str, Any]], output: str) -> None:
    """
    Print ``rows`` as Airflow's CLI does for ``-o``.

    :param rows: one mapping per row, all with the same keys
    :param output: ``table``, ``json``, ``yaml`` or ``plain`` (tab-separated, no header)
    """
    if output == "json":
        print(json.dumps(rows, indent=2, default=str))
    elif output == "yaml":
        print(yaml.safe_dump(json.loads(json.dumps(rows, default=str)), sort_keys=False), end="")
    elif not rows:
        print("" if output == "plain" else "No data found")
    else:
        cells = [[("" if v is None else str(v)) for v in row.values()] for row in rows]
        if output == "plain":
            print("\n".join("\t".join(line) for line in cells))
            return
        header = list(rows[0])
        widths = [max(len(str(h)), *(len(line[i]) for line in cells)) for i, h in enumerate(header)]
        print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        print("=+=".join("=" * w for w in widths))
        for line in cells:
            print(" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
