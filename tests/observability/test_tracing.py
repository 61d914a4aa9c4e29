"""Spans per request with the GenAI semantic conventions, checked with the SDK's in-memory
exporter; OTLP export checked against a receiver on loopback."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from charter.errors import MissingDependency
from charter.gateway.service import Outcome
from charter.observability import Tracing, model_providers
from charter.policy.verdict import Action, Stage, Verdict
from charter.providers.types import Usage
from tests.gateway.conftest import SUPPORT_KEY
from tests.monitors.charters import charter_with
from tests.observability.conftest import LATENCY_S, Factory

EMAIL = "jane.doe@example.com"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def tracing(exporter: InMemorySpanExporter, **kwargs: Any) -> Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, providers=model_providers(charter_with()), **kwargs)


def chat(content: str) -> dict[str, Any]:
    return {"model": "sim-small", "messages": [{"role": "user", "content": content}]}


@pytest.mark.anyio
async def test_each_request_is_a_genai_span_with_its_verdicts_as_events(
    observed_factory: Factory, exporter: InMemorySpanExporter
) -> None:
    o = await observed_factory(tracing=tracing(exporter))
    auth = {"authorization": f"Bearer {SUPPORT_KEY}"}
    answered = await o.client.post(
        "/v1/chat/completions", json=chat(f"Mail me at {EMAIL}"), headers=auth
    )
    assert answered.status_code == 200
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    outcome = o.services.gateway.recent[-1]
    assert span.name == "chat sim-small" and span.kind is SpanKind.SERVER
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "sim-small"
    assert attrs["gen_ai.provider.name"] == "charter.simulated"
    assert outcome.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == outcome.usage.input_tokens > 0
    assert attrs["gen_ai.usage.output_tokens"] == outcome.usage.output_tokens > 0
    assert attrs["charter.request.id"] == outcome.request_id
    assert attrs["charter.version"] == o.services.gateway.version
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == pytest.approx(LATENCY_S * 1e9, abs=1)
    events = {e.attributes["charter.control.id"]: e.attributes for e in span.events if e.attributes}
    assert {e.name for e in span.events} == {"charter.verdict"}
    assert events["pii-redaction"]["charter.verdict.action"] == "redact"
    assert tuple(events["pii-redaction"]["charter.decision.ids"]) == ("pii-stays-home",)
    assert events["model-allowlist"]["charter.verdict.action"] == "allow"
    # The example keeps redacted text in its audit trail, so the span may carry the prompt as the
    # provider received it: redacted, never the address itself.
    messages = json.loads(str(attrs["gen_ai.input.messages"]))
    assert "<EMAIL_ADDRESS_1>" in messages[0]["parts"][0]["content"]
    assert EMAIL not in json.dumps(attrs)


@pytest.mark.anyio
async def test_no_prompt_on_spans_unless_the_charter_keeps_redacted_text(
    observed_factory: Factory, exporter: InMemorySpanExporter
) -> None:
    o = await observed_factory(tracing=tracing(exporter), charter={"content": "hashed"})
    auth = {"authorization": f"Bearer {SUPPORT_KEY}"}
    await o.client.post("/v1/chat/completions", json=chat("Where is my order?"), headers=auth)
    (span,) = exporter.get_finished_spans()
    assert "gen_ai.input.messages" not in (span.attributes or {})
    assert span.attributes and span.attributes["gen_ai.request.model"] == "sim-small"


def test_the_operator_can_keep_content_off_even_where_the_charter_allows_it(
    exporter: InMemorySpanExporter,
) -> None:
    outcome = Outcome("req_1", "support-bot", "sim-small", sent_upstream="hello")
    tracing(exporter, include_content=False).record(outcome, 0.01, content_allowed=True)
    (span,) = exporter.get_finished_spans()
    assert "gen_ai.input.messages" not in (span.attributes or {})


def test_a_refusal_and_an_upstream_failure_are_marked(exporter: InMemorySpanExporter) -> None:
    blocked = Verdict(
        Action.BLOCK, "input-injection", ("no-jailbreaks",), "hit", Stage.INPUT, score=0.97
    )
    t = tracing(exporter)
    t.record(
        Outcome("req_1", "support-bot", "sim-small", [blocked], Usage(0, 0), refused_by=blocked),
        0.01,
    )
    t.record(
        Outcome("req_2", "support-bot", "sim-small", status=502, error="upstream said 500"), 0.01
    )
    refused, failed = exporter.get_finished_spans()
    assert refused.attributes and refused.attributes["gen_ai.response.finish_reasons"] == (
        "content_filter",
    )
    assert refused.attributes["charter.refused_by"] == "input-injection"
    assert (
        refused.events[0].attributes
        and refused.events[0].attributes["charter.verdict.score"] == 0.97
    )
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes and failed.attributes["error.type"] == "502"


def test_a_traceparent_from_the_client_becomes_the_parent(exporter: InMemorySpanExporter) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    tracing(exporter).record(Outcome("req_1", "a", "sim-small"), 0.01, traceparent=parent)
    (span,) = exporter.get_finished_spans()
    assert span.context is not None and f"{span.context.trace_id:032x}" == parent[3:35]
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"


class Collector:
    """An OTLP/HTTP receiver on 127.0.0.1 that records what it is sent."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                collector.posts.append((self.path, self.headers["content-type"], body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()
    c.server.server_close()


def test_spans_are_exported_over_otlp_when_an_endpoint_is_configured(collector: Collector) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    t = Tracing.otlp(f"http://127.0.0.1:{collector.port}/v1/traces")
    t.record(Outcome("req_otlp", "support-bot", "sim-small", usage=Usage(12, 34)), 0.01)
    t.shutdown()  # flushes the batch
    ((path, content_type, body),) = collector.posts
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    sent = ExportTraceServiceRequest.FromString(body)
    (span,) = sent.resource_spans[0].scope_spans[0].spans
    attrs = {a.key: a.value for a in span.attributes}
    assert span.name == "chat sim-small"
    assert attrs["gen_ai.usage.output_tokens"].int_value == 34
    assert attrs["charter.request.id"].string_value == "req_otlp"


def test_without_the_otel_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(MissingDependency) as info:
        Tracing()
    assert info.value.hint == "pip install 'charter[otel]'"
