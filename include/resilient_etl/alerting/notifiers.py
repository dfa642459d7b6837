"""
The Airflow task callbacks that feed the alert engine:

* :class:`FailureNotifier` (``on_failure_callback``): classify, open or update the incident, alert the
  severity's channels and its first on-call tier; a repeat of an active incident updates it silently.
* :class:`RetryNotifier` (``on_retry_callback``): log the classified retry; alert only when the
  severity's route has ``notify_retries``.
* :class:`RecoveryNotifier` (``on_success_callback``): resolve the task's active incidents and send
  the recovery message.
* :class:`~resilient_etl.alerting.timers.SoftDeadlineNotifier` (``on_execute_callback``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseNotifier

from resilient_etl.alerting.engine import Alerter
from resilient_etl.alerting.timers import SoftDeadlineNotifier, log_url_of, stop_soft_deadline, ti_fields


class FailureNotifier(BaseNotifier):
    """Classify a task failure and route it (``on_failure_callback``)."""

    def notify(self, context: Any) -> None:
        """Open or update the incident for the failure in ``context`` and alert when it is new."""
        stop_soft_deadline(context)
        exc = context.get("exception") or RuntimeError("task failed without an exception (killed or timed out)")
        ti = context["ti"]
        Alerter().failure(exc, **ti_fields(context), log_url=log_url_of(context), try_number=ti.try_number, max_tries=ti.max_tries + 1)


class RetryNotifier(BaseNotifier):
    """Log a classified retry, alerting only when the route asks for it (``on_retry_callback``)."""

    def notify(self, context: Any) -> None:
        """Log (and maybe alert) the retry in ``context``."""
        stop_soft_deadline(context)
        exc = context.get("exception") or RuntimeError("task is up for retry")
        ti = context["ti"]
        Alerter().retry(exc, **ti_fields(context), try_number=ti.try_number, max_tries=ti.max_tries + 1, log_url=log_url_of(context))


class RecoveryNotifier(BaseNotifier):
    """Resolve a task's incidents when it succeeds and send the recovery message (``on_success_callback``)."""

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render nothing: this notifier has no templates, and as a DAG callback under ``dag.test`` it is given a
        SerializedDAG, which has no template environment to build (the callback then failed, leaving incidents open)."""

    def notify(self, context: Any) -> None:
        """Resolve the active incidents of the task (or, as a DAG callback, of the whole run) in ``context``."""
        if "ti" not in context:  # DAG-level on_success_callback: the run's own incidents (deadlines)
            run = context["dag_run"]
            Alerter().recover_task(dag_id=run.dag_id, task_id=None, run_id=run.run_id)
            return
        stop_soft_deadline(context)
        Alerter().recover_task(**ti_fields(context))


def task_callbacks() -> dict[str, list[BaseNotifier]]:
    """Return the callback arguments that wire alerting into a DAG's ``default_args``."""
    return {
        "on_execute_callback": [SoftDeadlineNotifier()],
        "on_failure_callback": [FailureNotifier()],
        "on_retry_callback": [RetryNotifier()],
        "on_success_callback": [RecoveryNotifier()],
    }
