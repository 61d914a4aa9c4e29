"""OpenTelemetry spans per request, following the GenAI semantic conventions (extra ``otel``).

One span per request, named ``{gen_ai.operation.name} {gen_ai.request.model}``, carrying the
``gen_ai.*`` request and usage attributes and Charter's own (``charter.*``); each control's verdict
is a span event ``charter.verdict``. Prompt text is put on the span (``gen_ai.input.messages``)
only when the charter lets the audit trail keep redacted text, and then only as the provider
received it, redacted. Off unless configured; exported over OTLP/HTTP when an endpoint is given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from charter.errors import MissingDependency

if TYPE_CHECKING:
    from charter.gateway.service import Outcome

SCOPE = "charter.gateway"


def _sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ImportError:
        raise MissingDependency("opentelemetry-sdk", "otel", "Tracing") from None
    return sdk_trace


class Tracing:
    """Turns finished requests into spans on a tracer provider (the SDK's, or one given)."""

    def __init__(
        self,
        tracer_provider: Any = None,
        *,
        include_content: bool = True,
        providers: Mapping[str, str] | None = None,
        service_name: str = "charter",
    ) -> None:
        """``include_content=False`` keeps prompt text off spans even where the charter allows
        it; True (the default) puts it on exactly when the charter allows it."""
        sdk_trace = _sdk()
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        if tracer_provider is None:
            tracer_provider = sdk_trace.TracerProvider(
                resource=Resource.create({"service.name": service_name})
            )
        self.provider = tracer_provider
        self.tracer = tracer_provider.get_tracer(SCOPE)
        self.include_content = include_content
        self.providers = dict(providers or {})  # model name -> gen_ai.provider.name
        self._kind = trace.SpanKind.SERVER
        self._status = trace.Status
        self._error = trace.StatusCode.ERROR
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def otlp(
        cls,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        include_content: bool = True,
        providers: Mapping[str, str] | None = None,
        service_name: str = "charter",
    ) -> Tracing:
        """Spans batched and exported over OTLP/HTTP to ``endpoint`` (e.g. a collector's
        ``http://127.0.0.1:4318/v1/traces``)."""
        sdk_trace = _sdk()
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise MissingDependency(
                "opentelemetry-exporter-otlp-proto-http", "otel", "OTLP export"
            ) from None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = sdk_trace.TracerProvider(
            resource=Resource.create({"service.name": service_name})
        )
        exporter = OTLPSpanExporter(endpoint=endpoint, headers=dict(headers or {}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, include_content=include_content, providers=providers)

    def record(
        self,
        outcome: Outcome,
        latency_s: float,
        *,
        operation: str = "chat",
        charter_version: str | None = None,
        content_allowed: bool = False,
        traceparent: str | None = None,
        end_ns: int | None = None,
    ) -> None:
        """Emit the span of a request that ended ``latency_s`` seconds after it started.

        ``content_allowed`` says whether the charter lets redacted prompt text be kept.
        """
        end = time.time_ns() if end_ns is None else end_ns
        start = end - max(0, int(latency_s * 1e9))
        context = self._propagator.extract({"traceparent": traceparent}) if traceparent else None
        span = self.tracer.start_span(
            f"{operation} {outcome.model}",
            context=context,
            kind=self._kind,
            attributes=self._attributes(
                outcome, operation, charter_version, content_allowed and self.include_content
            ),
            start_time=start,
        )
        for v in outcome.verdicts:
            event: dict[str, Any] = {
                "charter.control.id": v.control_id,
                "charter.decision.ids": list(v.decision_ids),
                "charter.verdict.action": v.action.value,
                "charter.verdict.enforced": v.enforced,
                "charter.verdict.stage": v.stage.value,
                "charter.verdict.reason": v.reason,
            }
            if v.score is not None:
                event["charter.verdict.score"] = float(v.score)
            span.add_event("charter.verdict", event, timestamp=end)
        if outcome.status >= 500:
            span.set_status(self._status(self._error, outcome.error or str(outcome.status)))
        span.end(end_time=end)

    def _attributes(
        self, outcome: Outcome, operation: str, charter_version: str | None, content: bool
    ) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": outcome.model,
            "gen_ai.provider.name": self.providers.get(outcome.model, "charter"),
            "http.response.status_code": outcome.status,
            "charter.request.id": outcome.request_id,
            "charter.principal": outcome.principal,
            "charter.cost.usd": outcome.cost_micro_usd / 1e6,
        }
        if charter_version:
            attrs["charter.version"] = charter_version
        usage = outcome.usage
        if usage is not None:
            attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        if outcome.status == 200:
            attrs["gen_ai.response.model"] = outcome.model
        if outcome.refused_by is not None:
            attrs["gen_ai.response.finish_reasons"] = ["content_filter"]
            attrs["charter.refused_by"] = outcome.refused_by.control_id
        if outcome.status >= 400:
            attrs["error.type"] = str(outcome.status)
        if content and outcome.sent_upstream:
            attrs["gen_ai.input.messages"] = json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": outcome.sent_upstream}]}]
            )
        return attrs

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
