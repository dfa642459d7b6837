"""The alert receivers the tests use: the sandbox's own (resilient_etl_devtools.sandbox.sinks)."""

from resilient_etl_devtools.sandbox.sinks import Received, SlackSink, SmtpSink, free_port

__all__ = ["Received", "SlackSink", "SmtpSink", "free_port"]
