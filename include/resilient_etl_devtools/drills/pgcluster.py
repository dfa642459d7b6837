"""
Throwaway PostgreSQL servers on loopback for the failover drill: a primary (``initdb``) and its streaming
standby (``pg_basebackup -R``), each on a free port with its socket in its own folder, run as the
``postgres`` user when this process is root (the server refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

from resilient_etl_devtools.drills.injector import DrillSetupError
from resilient_etl_devtools.sandbox.sinks import free_port


def bin_dir() -> Path:
    """Return the newest installed PostgreSQL server's ``bin`` folder (Debian: /usr/lib/postgresql/<v>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise DrillSetupError("no PostgreSQL server binaries (initdb) found: install Debian's postgresql package (scripts/services.sh)")
    return Path(initdb).parent


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], *, timeout: float = 120) -> None:
    done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, check=False, timeout=timeout)
    if done.returncode != 0:
        raise DrillSetupError(f"{Path(cmd[0]).name} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}")


@dataclass
class PgServer:
    """One PostgreSQL server: its data folder and port; started and stopped with ``pg_ctl``."""

    data_dir: Path
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def url(self, database: str = "postgres") -> sqlalchemy.URL:
        return sqlalchemy.URL.create("postgresql+psycopg2", username="postgres", host="127.0.0.1", port=self.port, database=database)

    def start(self) -> PgServer:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c wal_keep_size=64MB"
        _run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"), "-o", options, "-w", "-t", "60", "start"])
        return self

    def pid(self) -> int | None:
        """Return the postmaster's PID, or None when it is not running."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def kill(self) -> None:
        """SIGKILL the postmaster, as a lost machine would: no shutdown checkpoint, connections cut."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)

    def promote(self) -> None:
        """Promote this standby to a primary and wait until it accepts writes."""
        _run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", "promote"])
        engine = sqlalchemy.create_engine(self.url())
        try:
            deadline = time.monotonic() + 30
            while True:
                with engine.connect() as conn:
                    if not conn.execute(sqlalchemy.text("SELECT pg_is_in_recovery()")).scalar():
                        return
                if time.monotonic() > deadline:
                    raise DrillSetupError(f"standby on port {self.port} still in recovery 30 s after promote")
                time.sleep(0.1)
        finally:
            engine.dispose()

    def stop(self) -> None:
        """Stop the server if it runs (immediate mode: a drill's server holds nothing worth a checkpoint)."""
        if self.pid() is not None:
            subprocess.run(
                _as_server_user([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                check=False,
            )


def hand_to_server_user(path: Path) -> Path:
    """Make ``path`` the server user's (``postgres`` when this process is root), mode 0700 as the server wants."""
    path.chmod(0o700)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _owned_folder(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return hand_to_server_user(path)


def primary(folder: Path) -> PgServer:
    """Create and start a new primary in ``folder`` (trust auth on loopback, replication allowed)."""
    data = _owned_folder(folder)
    _run([str(bin_dir() / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"])
    return PgServer(data, free_port()).start()


def standby_of(source: PgServer, folder: Path) -> PgServer:
    """Clone ``source`` with ``pg_basebackup -R`` (a streaming standby) into ``folder`` and start it."""
    data = _owned_folder(folder)
    _run(
        [
            str(bin_dir() / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(source.port),
            "-U",
            "postgres",
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ]
    )
    return PgServer(data, free_port()).start()


def replication_lag_bytes(primary_server: PgServer) -> int | None:
    """Return how many WAL bytes the standby has not replayed yet (None: no standby connected)."""
    engine = sqlalchemy.create_engine(primary_server.url())
    try:
        with engine.connect() as conn:
            return conn.execute(
                sqlalchemy.text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication LIMIT 1")
            ).scalar()
    finally:
        engine.dispose()
