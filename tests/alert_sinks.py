"""The alert receivers the tests use: the sandbox's own (resilient_etl.sandbox.sinks)."""

from resilient_etl.sandbox.sinks import Received, SlackSink, SmtpSink, free_port

__all__ = ["Received", "SlackSink", "SmtpSink", "free_port"]
