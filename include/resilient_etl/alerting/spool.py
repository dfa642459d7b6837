"""Alerts sent while the incident store (the warehouse) was down, kept on disk until they can be recorded."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

from resilient_etl.classification import Classification
from resilient_etl.exceptions import Category, Severity


class AlertSpool:
    """
    A folder of alerts that could not be recorded, one JSON file each (written whole, then renamed).

    :param folder: where they wait
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, *, classification: Classification, now: dt.datetime, **fields: Any) -> Path:
        """Keep one unrecorded alert; return its file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        entry = {**fields, "now": now.isoformat(), "classification": dataclasses.asdict(classification)}
        name = f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.json"
        tmp = self.folder / f".{name}"
        tmp.write_text(json.dumps(entry, default=str), encoding="utf-8")
        return tmp.rename(self.folder / name)

    def entries(self) -> list[tuple[Path, dict[str, Any]]]:
        """Return the waiting alerts, oldest first, as keyword arguments for recording."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in sorted(self.folder.glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            c = data.pop("classification")
            data["classification"] = Classification(**{**c, "category": Category(c["category"]), "severity": Severity(c["severity"])})
            data["now"] = dt.datetime.fromisoformat(data["now"])
            out.append((path, data))
        return out
