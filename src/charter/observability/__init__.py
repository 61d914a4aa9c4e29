"""Seeing the gateway at work: Prometheus metrics, OpenTelemetry traces, JSON logs, drift alerts.

The gateway calls ``Observer.observe(outcome, latency_s)`` once per request and mounts
``Observer.routes(gateway)``; see docs/observability.md.
"""

from charter.observability.logs import JsonFormatter, bind_request_id, scrub, setup_logging
from charter.observability.metrics import Metrics
from charter.observability.observer import Observer, content_allowed, model_providers
from charter.observability.tracing import Tracing

__all__ = [
    "JsonFormatter",
    "Metrics",
    "Observer",
    "Tracing",
    "bind_request_id",
    "content_allowed",
    "model_providers",
    "scrub",
    "setup_logging",
]
