"""The injector base every fault kind builds on (:mod:`.faults`, :mod:`.disasters`), and its setup error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilient_etl_devtools.drills.target import LocalTarget


class DrillSetupError(RuntimeError):
    """A fault cannot be put in force here (the drill is refused, nothing was changed)."""


@dataclass
class Injector:
    """
    Base: a fault that is in force between :meth:`inject` and :meth:`remove`.

    :meth:`prepare` builds what the fault needs before the drill's own drop (a backup to restore, a
    standby to promote); :meth:`cleanup` takes it down on every way out. ``measures`` holds what the
    injector measured for the report; ``earlier_drops`` the files it loaded before the drill's drop.
    """

    target: LocalTarget
    active: bool = False
    measures: dict[str, Any] = field(default_factory=dict)
    earlier_drops: list[Any] = field(default_factory=list)

    def prepare(self, event: Callable[[str], None]) -> None:
        """Build what the fault needs; ``event`` adds a line to the drill's timeline."""

    def inject(self) -> None:
        self.active = True

    def remove(self) -> None:
        self.active = False

    def cleanup(self) -> None:
        """Take down what :meth:`prepare` built (called on every way out, after :meth:`remove`)."""

    def dead_requests(self) -> int:
        return 0
