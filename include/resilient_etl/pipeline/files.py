"""Moving landing files: to rejected/ with the reason beside them, or to archive/ after a good run."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path


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
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return target


def archive_files(files: list[str], *, landing_dir: Path, archive_dir: Path, run_id: str) -> list[Path]:
    """Move the run's files from landing to ``archive_dir/<run id>/``; files already moved are skipped."""
    target_dir = archive_dir / "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    moved = []
    for name in files:
        source = landing_dir / name
        if source.exists():
            target_dir.mkdir(parents=True, exist_ok=True)
            moved.append(Path(shutil.move(str(source), target_dir / name)))
    return moved
