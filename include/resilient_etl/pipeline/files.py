"""Moving landing files: to rejected/ with the reason beside them, or to archive/ after a good run."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

REASON_SUFFIX = ".reason.txt"  # beside a rejected file: why it was rejected
QUALITY_SUFFIX = ".quality.json"  # beside a file the data-quality gate rejected: the rule-by-rule report
SIDECARS = (REASON_SUFFIX, QUALITY_SUFFIX)
# `resilient-etl quarantine replay` writes these: rows quarantined before, so the data-quality gate (a
# share of bad rows) does not reject them as a file; each row is validated and quarantined on its own.
REPLAY_PREFIX = "replay-"


def is_replay(name: str) -> bool:
    """Return whether a landing file is a quarantine replay."""
    return Path(name).name.startswith(REPLAY_PREFIX)


def reject_file(path: Path, rejected_dir: Path, reason: str) -> Path:
    """
    Move a file that will not be loaded to ``rejected_dir``, with a ``.reason.txt`` beside it; return its new path.

    :param path: the landing file
    :param rejected_dir: the rejected folder
    :param reason: why it was rejected
    """
    rejected_dir.mkdir(parents=True, exist_ok=True)
    target = rejected_dir / path.name
    if target.exists():
        target = rejected_dir / f"{path.stem}.{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}{path.suffix}"
    shutil.move(str(path), target)
    target.with_name(target.name + REASON_SUFFIX).write_text(reason + "\n", encoding="utf-8")
    return target


def run_folder_name(run_id: str) -> str:
    """Return a run id as a folder or file name part (``manual__2026-12-01T10:00:00+00:00`` -> ``manual__2026-12-01T10_00_00_00_00``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)


def archive_files(files: list[str], *, landing_dir: Path, archive_dir: Path, run_id: str) -> list[Path]:
    """Move the run's files from landing to ``archive_dir/<run id>/``; files already moved are skipped."""
    target_dir = archive_dir / run_folder_name(run_id)
    moved = []
    for name in files:
        source = landing_dir / name
        if source.exists():
            target_dir.mkdir(parents=True, exist_ok=True)
            moved.append(Path(shutil.move(str(source), target_dir / name)))
    return moved
