"""Real receivers for alerts on loopback: an SMTP server (aiosmtpd) and a Slack incoming-webhook endpoint."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("html", "plain"))
        self.messages.append(Received(time.time(), list(envelope.rcpt_tos), str(msg["subject"]), part.get_content() if part else ""))
        return "250 Message accepted for delivery"

    port: int = 0

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
        return {"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "resilient-etl@example.com", "timeout": 5, "retry_limit": 0}}


class SlackSink:
    """An incoming-webhook endpoint on 127.0.0.1: every POSTed JSON body lands in ``posts`` (with its arrival time)."""

    TOKEN = "T0TEST/B0TEST/webhooksecret0123"

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict[str, Any], str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.posts.append((time.time(), json.loads(body), self.path))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
        return {"conn_type": "slackwebhook", "host": self.url, "password": self.TOKEN}

    def texts(self) -> list[str]:
        return [p[1]["text"] for p in self.posts]
