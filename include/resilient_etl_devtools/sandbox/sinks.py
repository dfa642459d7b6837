"""
Local receivers for alerts on loopback: an SMTP server (aiosmtpd) and a Slack incoming-webhook endpoint.

`make demo` and `make standalone` run them (``resilient-etl-dev sandbox``) so that alerts are visible without
a mail server or a Slack workspace: each message is also written to the outbox folder (``.eml`` for
e-mail, ``.json`` for Slack posts). The tests use them as real receivers.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    """Return a TCP port nothing listens on at the moment (for servers that cannot bind port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Received:
    at: float  # time.time() when the server accepted it
    to: list[str]
    subject: str
    body: str


@dataclass
class SmtpSink:
    """aiosmtpd on 127.0.0.1: every accepted message lands in ``messages``."""

    messages: list[Received] = field(default_factory=list)
    controller: Controller | None = None
    port: int = 0
    outbox: Path | None = None  # also write each message here as <time>.eml

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("html", "plain"))
        received = Received(time.time(), list(envelope.rcpt_tos), str(msg["subject"]), part.get_content() if part else "")
        self.messages.append(received)
        if self.outbox is not None:
            _write(self.outbox, f"{received.at:.6f}.eml", envelope.content)
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        if not self.port:  # aiosmtpd's readiness check connects to the port: it cannot bind port 0
            self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def connection(self) -> dict[str, Any]:
        return smtp_connection(self.port)


class SlackSink:
    """An incoming-webhook endpoint on 127.0.0.1: every POSTed JSON body lands in ``posts`` (with its arrival time)."""

    TOKEN = "T0TEST/B0TEST/webhooksecret0123"

    def __init__(self, port: int = 0, outbox: Path | None = None) -> None:
        self.posts: list[tuple[float, dict[str, Any], str]] = []
        self.outbox = outbox
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time()
                sink.posts.append((at, json.loads(body), self.path))
                if sink.outbox is not None:
                    _write(sink.outbox, f"{at:.6f}.slack.json", body)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SlackSink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def connection(self) -> dict[str, Any]:
        return slack_connection(self.server.server_address[1])

    def texts(self) -> list[str]:
        return [p[1]["text"] for p in self.posts]


def smtp_connection(port: int) -> dict[str, Any]:
    """Return the ``smtp_default`` connection for a sink on ``port`` (plain SMTP on loopback)."""
    return {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "resilient-etl@example.com", "timeout": 5, "retry_limit": 0},
    }


def slack_connection(port: int) -> dict[str, Any]:
    """Return the ``slack_alerts`` connection for a webhook sink on ``port``."""
    return {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{port}", "password": SlackSink.TOKEN}


def _write(folder: Path, name: str, content: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
