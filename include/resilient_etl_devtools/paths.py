"""The source checkout these tools work in (they are only ever run from one)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
