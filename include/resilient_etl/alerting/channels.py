"""
Alert channels: e-mail through Airflow's SMTP provider and Slack through an incoming webhook, each
rendered from the Jinja templates in ``resilient_etl/templates/<channel>/<SEVn|recovery>``.

Every text that leaves goes through :func:`redact` first: the passwords and keys of the connections
the pipeline uses never appear in a message, whatever an error's text holds.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from resilient_etl.alerting.incidents import Recipient
from resilient_etl.hooks.connections import connection_exists

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).resolve().parent / "templates"
_SECRET_EXTRA = re.compile(r"key|token|secret|password", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/\s:@]+:[^/\s@]+@")


@dataclasses.dataclass(frozen=True)
class AlertMessage:
    """Everything a template may show about one alert."""

    kind: str  # failure | retry | escalation | deadline | recovery
    title: str
    dag_id: str
    task_id: str | None
    run_id: str | None
    category: str
    severity: str
    transient: bool
    error_type: str
    error: str
    cause: str
    action: str
    log_url: str
    runbook_link: str
    try_number: int | None = None
    max_tries: int | None = None
    incident_id: int | None = None
    occurrences: int = 1
    escalation: str | None = None
    recipient: Recipient | None = None
    resolution: str | None = None
    open_for: str | None = None


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html.j2"]), undefined=jinja2.StrictUndefined
    )


def template_name(channel: str, message: AlertMessage) -> str:
    """Return the template for a channel and message: the severity's, or ``recovery``."""
    suffix = "html.j2" if channel == "email" else "md.j2"
    variant = "recovery" if message.kind == "recovery" else message.severity
    return f"{channel}/{variant}.{suffix}"


def render(channel: str, message: AlertMessage) -> str:
    """Render ``message`` for ``email`` (HTML) or ``slack`` (mrkdwn)."""
    return _environment().get_template(template_name(channel, message)).render(a=message).strip()


def subject(message: AlertMessage) -> str:
    """Return the e-mail subject line."""
    tag = "RESOLVED" if message.kind == "recovery" else message.severity
    return f"[{tag}] {message.title}"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and any ``user:password@`` in a URL) in ``text`` with ``***``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def connection_secrets(conn_ids: Iterable[str]) -> list[str]:
    """
    Return the password and secret-looking extras of each connection that exists.

    A connection that cannot be read contributes nothing (it cannot leak what we cannot read).
    """
    from airflow.sdk.bases.hook import BaseHook

    found: list[str] = []
    for conn_id in conn_ids:
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:  # boundary: a missing connection has no secret to hide
            continue
        found += [conn.password or ""]
        found += [str(v) for k, v in (conn.extra_dejson or {}).items() if _SECRET_EXTRA.search(k) and isinstance(v, str)]
    return [s for s in found if s]


def send_email(conn_id: str, *, to: list[str], subject_line: str, html: str, from_email: str) -> None:
    """Send one HTML e-mail through the SMTP connection ``conn_id``."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=conn_id) as hook:
        hook.send_email_smtp(to=to, subject=subject_line, html_content=html, from_email=from_email)


def send_slack(conn_id: str, *, text: str) -> None:
    """Post one message through the Slack incoming-webhook connection ``conn_id``."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    SlackWebhookHook(slack_webhook_conn_id=conn_id).send(text=text)


def deliver(
    message: AlertMessage,
    *,
    channels: Iterable[str],
    emails: list[str],
    email_conn_id: str,
    slack_conn_id: str,
    from_email: str,
    secrets: Iterable[str],
) -> dict[str, Any]:
    """
    Send ``message`` on each channel; a failing channel is logged and does not stop the others.

    :return: channel -> ``"sent"`` or the delivery error's type and text (redacted)
    """
    secrets = list(secrets)
    clean = dataclasses.replace(message, error=redact(message.error, secrets), title=redact(message.title, secrets))
    results: dict[str, Any] = {}
    for channel in channels:
        conn_id = email_conn_id if channel == "email" else slack_conn_id
        if not connection_exists(conn_id):  # nobody set the channel up: say so once, not as a failure
            results[channel] = "not configured"
            _warn_unconfigured(channel, conn_id)
            continue
        try:
            if channel == "email":
                if not emails:
                    results[channel] = "no recipient"
                    continue
                send_email(email_conn_id, to=emails, subject_line=subject(clean), html=redact(render("email", clean), secrets), from_email=from_email)
            else:
                send_slack(slack_conn_id, text=redact(render("slack", clean), secrets))
            results[channel] = "sent"
        except Exception as exc:  # boundary: one channel down must not silence the others
            results[channel] = redact(f"{type(exc).__name__}: {exc}", secrets)
            log.error("Alert %r not delivered by %s: %s", clean.title, channel, results[channel])
    return results


_UNCONFIGURED_WARNED: set[str] = set()


def _warn_unconfigured(channel: str, conn_id: str) -> None:
    if channel not in _UNCONFIGURED_WARNED:
        _UNCONFIGURED_WARNED.add(channel)
        log.warning(
            "Alerts are not sent by %s: no connection %s is configured (`resilient-etl-dev sandbox --outbox` runs a local one)", channel, conn_id
        )
