"""Where the checkout's files are, for tests (the runtime finds its config through config_path())."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG_FILE = REPO / "config" / "resilience.yaml"
# The last release before warehouse migrations (the commit the migration baseline reproduces): the
# rollback and upgrade tests check it out with `git worktree` / `git show`.
PREVIOUS_RELEASE = "c6bda94"
