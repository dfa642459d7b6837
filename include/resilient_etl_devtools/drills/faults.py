"""
Each fault kind of the catalogue as an injector: ``inject`` puts it in force, ``remove`` takes it away
(safe to call twice, and called on every way out of a drill), ``dead_requests`` counts what hit it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resilient_etl_devtools.drills.catalogue import ConfigFault, FileFault, FilesystemFault, HttpFault, KillFault, ProxyFault
from resilient_etl_devtools.drills.injector import DrillSetupError, Injector
from resilient_etl_devtools.drills.proxy import Toxic
from resilient_etl_devtools.sandbox.faults import FaultSpec

if TYPE_CHECKING:
    from resilient_etl_devtools.drills.target import LocalTarget


@dataclass
class HttpInjector(Injector):
    fault: HttpFault | None = None

    def inject(self) -> None:
        assert self.fault is not None
        spec = FaultSpec(
            status=self.fault.status, retry_after=self.fault.retry_after, hang_seconds=self.fault.hang_seconds, truncate=self.fault.truncate
        )
        self.target.api_registry(self.fault.api).set("*", spec)
        super().inject()

    def remove(self) -> None:
        if self.fault is not None:
            self.target.api_registry(self.fault.api).clear("*")
        super().remove()

    def dead_requests(self) -> int:
        assert self.fault is not None
        return sum(self.target.api_registry(self.fault.api).injected.values())


@dataclass
class ProxyInjector(Injector):
    fault: ProxyFault | None = None
    _before: int = 0

    def inject(self) -> None:
        assert self.fault is not None
        proxy = self.target.proxies.get(self.fault.link)
        if proxy is None:
            raise DrillSetupError(f"the {self.target.name} target has no {self.fault.link} link to fault (warehouse: {self.target.spec.warehouse})")
        self._before = proxy.stats.faulted
        f = self.fault
        proxy.set_toxic(Toxic(f.toxic, latency_ms=f.latency_ms, jitter_ms=f.jitter_ms, rate_kb=f.rate_kb, timeout_ms=f.timeout_ms))
        super().inject()

    def remove(self) -> None:
        if self.fault is not None and self.fault.link in self.target.proxies:
            self.target.proxies[self.fault.link].clear()
        super().remove()

    def dead_requests(self) -> int:
        assert self.fault is not None
        proxy = self.target.proxies.get(self.fault.link)
        return proxy.stats.faulted - self._before if proxy else 0


@dataclass
class KillInjector(Injector):
    """Killing is instant: :meth:`inject` is given the run to kill by the runner."""

    fault: KillFault | None = None
    run: Any = None

    def inject(self) -> None:
        if self.run is not None:
            self.target.kill(self.run)
        super().inject()


@dataclass
class FilesystemInjector(Injector):
    """
    ``full``: a small tmpfs mounted over the folder (needs root); ``read_only``: the folder made immutable
    (``chattr +i``, which binds root too). On removal, whatever was written to the tmpfs is moved back.
    """

    fault: FilesystemFault | None = None
    _saved: Path | None = None

    @property
    def folder(self) -> Path:
        assert self.fault is not None
        return self.target.folder(self.fault.folder)

    def inject(self) -> None:
        assert self.fault is not None
        if os.geteuid() != 0:
            raise DrillSetupError(f"a {self.fault.mode} folder drill needs root (mount / chattr); run it as root or skip it")
        if self.fault.mode == "full":
            self._saved = Path(tempfile.mkdtemp(prefix="drill-fs-", dir=self.target.state_dir))
            for item in self.folder.iterdir():
                shutil.move(str(item), self._saved / item.name)
            try:
                _run(["mount", "-t", "tmpfs", "-o", f"size={self.fault.size_kb}k", "drill-full", str(self.folder)])
            except DrillSetupError:
                self._restore(self._saved)
                raise
            self.active = True  # mounted: from here on, remove() must undo it whatever happens next
            _fill(self.folder / ".drill-filler")  # what the pipeline writes next finds no space
        else:
            _run(["chattr", "+i", str(self.folder)])
        super().inject()

    def remove(self) -> None:
        if not self.active or self.fault is None:
            return
        if self.fault.mode == "full":
            kept = Path(tempfile.mkdtemp(prefix="drill-fs-kept-", dir=self.target.state_dir))
            for item in self.folder.iterdir():
                if item.name != ".drill-filler":
                    shutil.move(str(item), kept / item.name)
            _run(["umount", str(self.folder)])
            self._restore(self._saved)
            self._restore(kept)
        else:
            _run(["chattr", "-i", str(self.folder)])
        super().remove()

    def _restore(self, source: Path | None) -> None:
        """Move what ``source`` holds back into the folder, and remove ``source``."""
        if source is not None:
            for item in source.iterdir():
                shutil.move(str(item), self.folder / item.name)
            source.rmdir()


@dataclass
class FileInjector(Injector):
    """A malformed file beside the drop; it must end in rejected/ and nothing else must suffer."""

    fault: FileFault | None = None
    path: Path | None = None

    def inject(self) -> None:
        assert self.fault is not None
        self.path = self.target.folder("landing") / f"malformed-{os.getpid()}-{id(self)}.csv"
        if self.fault.content == "binary":
            self.path.write_bytes(b"\xff\xfe\x00garbage\x00\x81 not a csv\n" * 20)
        else:
            self.path.write_text("id;name;zip\n1;Acme;AB10 1XG\n")
        super().inject()

    def remove(self) -> None:
        # The file is the fault: once dropped, it stays for the pipeline to reject (a drill stopped before
        # any run leaves it for the next run, which rejects it the same way).
        super().remove()


@dataclass
class ConfigInjector(Injector):
    """A bad config deployed over the target's; removal is the runbook's rollback to the last good one."""

    fault: ConfigFault | None = None
    _good: str | None = None

    def inject(self) -> None:
        assert self.fault is not None
        self._good = self.target.config_file.read_text()
        overlay: dict[str, Any] = {}
        node = overlay
        *parents, leaf = self.fault.field.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = self.fault.value
        self.target.write_config(overlay)
        super().inject()

    def remove(self) -> None:
        if self._good is not None:
            self.target.config_file.write_text(self._good)
        super().remove()


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem is full (unbuffered: closing it cannot fail on a flush)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DrillSetupError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.returncode}")


_INJECTORS: dict[str, type[Injector]] = {
    "http": HttpInjector,
    "proxy": ProxyInjector,
    "kill": KillInjector,
    "filesystem": FilesystemInjector,
    "malformed_file": FileInjector,
    "bad_config": ConfigInjector,
}


def injector_for(fault: Any, target: LocalTarget) -> Injector:
    """Return the injector of ``fault`` on ``target``."""
    if fault.kind == "disaster":
        from resilient_etl_devtools.drills.disasters import DISASTERS

        injector = DISASTERS[fault.event](target)
        injector.fault = fault  # type: ignore[attr-defined]
        return injector
    injector = _INJECTORS[fault.kind](target)
    injector.fault = fault  # type: ignore[attr-defined]
    return injector
