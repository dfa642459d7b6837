"""Soft task deadlines: a timer per running task that alerts when it runs past its minutes, without stopping it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from airflow.sdk import BaseNotifier

from resilient_etl.alerting.engine import Alerter
from resilient_etl.exceptions import DeadlineMissedError

log = logging.getLogger(__name__)


class Timer(Protocol):
    """What a soft deadline needs of a timer (``threading.Timer`` is one)."""

    daemon: bool
    name: str

    def start(self) -> None: ...

    def cancel(self) -> None: ...


TimerFactory = Callable[[float, Callable[[], None]], Timer]


def ti_fields(context: Any) -> dict[str, Any]:
    """Return the dag, task and run ids of the task instance in a callback's ``context``."""
    ti = context["ti"]
    return {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id}


def log_url_of(context: Any) -> str | None:
    """Return the task instance's log address, when the context has a runtime task instance."""
    try:
        return context["ti"].log_url
    except Exception:  # boundary: a context without a runtime task instance (dag-processor callbacks)
        return None


_timers: dict[tuple[str, str, str, int], Timer] = {}


def _timer_key(context: Any) -> tuple[str, str, str, int]:
    ti = context["ti"]
    return ti.dag_id, ti.task_id, ti.run_id, ti.map_index if ti.map_index is not None else -1


def stop_soft_deadline(context: Any) -> None:
    """Cancel the soft-deadline timer of the task in ``context``, if one runs."""
    timer = _timers.pop(_timer_key(context), None)
    if timer is not None:
        timer.cancel()


class SoftDeadlineNotifier(BaseNotifier):
    """
    Start a soft deadline for the task (``on_execute_callback``).

    After ``deadlines.tasks.<task_id>`` minutes a still-running task raises a ``deadline_missed``
    alert (classified and deduplicated like any failure) and keeps running: Airflow's
    ``execution_timeout`` kills, this only tells.

    :param minutes: task id -> minutes (default: ``deadlines.tasks`` from the config)
    :param timer: makes the timer, ``(seconds, function)`` (tests pass one they fire themselves)
    """

    def __init__(self, minutes: dict[str, float] | None = None, *, timer: TimerFactory = threading.Timer) -> None:
        super().__init__()
        self.minutes = minutes
        self.timer = timer

    def notify(self, context: Any) -> None:
        """Start the timer for the task in ``context`` when it has a soft deadline."""
        alerter = Alerter()
        limits = self.minutes if self.minutes is not None else alerter.config.deadlines.tasks
        fields = ti_fields(context)
        minutes = limits.get(fields["task_id"])
        if minutes is None:
            return
        stop_soft_deadline(context)
        url = log_url_of(context)

        def missed() -> None:
            exc = DeadlineMissedError(
                f"{fields['task_id']} is still running after its soft deadline of {minutes:g} min (it keeps running)",
                scope="task",
                name=fields["task_id"],
                limit_seconds=minutes * 60,
            )
            try:
                alerter.failure(exc, kind="deadline", log_url=url, **fields)
            except Exception:  # boundary: a timer thread must log, never die silently
                log.exception("Soft deadline alert for %s failed", fields["task_id"])

        timer = self.timer(minutes * 60, missed)
        timer.daemon = True
        timer.name = f"soft-deadline-{fields['task_id']}"
        _timers[_timer_key(context)] = timer
        timer.start()
        log.info("Soft deadline for %s: %s min", fields["task_id"], minutes)
