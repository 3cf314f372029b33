"""OpenTelemetry tracing, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: a span per HTTP request and a
child span per gRPC stream to Triton, each with the request id; the stream's W3C `traceparent` goes to
Triton as gRPC metadata, so a Triton started with `--trace-config mode=opentelemetry` continues the trace.

Spans leave as OTLP/HTTP JSON (`<endpoint>/v1/traces`), which every OpenTelemetry collector accepts. The
OTLP protobuf exporters need protobuf >= 5 and tritonclient 2.51 needs protobuf < 5, so the few lines
of JSON encoding live here instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import contextmanager

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger("tritone.gateway")
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE = "tritone-gateway"


class OtlpJsonExporter(SpanExporter):
    """Spans to an OTLP/HTTP endpoint, JSON-encoded (the OTLP specification's JSON mapping)."""

    def __init__(self, endpoint: str, timeout_s: float = 10.0):
        self.url = endpoint.rstrip("/") + "/v1/traces"
        self.client = httpx.Client(timeout=timeout_s)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            response = self.client.post(self.url, json=otlp_json(spans))
            response.raise_for_status()
            return SpanExportResult.SUCCESS
        except httpx.HTTPError as error:
            log.warning("exporting %d span(s) to %s failed: %s", len(spans), self.url, error)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.client.close()


def _value(value) -> dict:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _attributes(attributes) -> list[dict]:
    return [{"key": key, "value": _value(value)} for key, value in (attributes or {}).items()]


def otlp_json(spans: Sequence[ReadableSpan]) -> dict:
    """An ExportTraceServiceRequest in OTLP's JSON mapping (ids in hex, times in nanoseconds as strings)."""
    by_resource: dict = {}
    for span in spans:
        by_resource.setdefault(span.resource, []).append(span)
    return {"resourceSpans": [{
        "resource": {"attributes": _attributes(resource.attributes)},
        "scopeSpans": [{"scope": {"name": "tritone"}, "spans": [{
            "traceId": f"{span.context.trace_id:032x}",
            "spanId": f"{span.context.span_id:016x}",
            **({"parentSpanId": f"{span.parent.span_id:016x}"} if span.parent else {}),
            "name": span.name,
            "kind": {SpanKind.SERVER: 2, SpanKind.CLIENT: 3}.get(span.kind, 1),
            "startTimeUnixNano": str(span.start_time),
            "endTimeUnixNano": str(span.end_time),
            "attributes": _attributes(span.attributes),
            "status": {"code": {StatusCode.OK: 1, StatusCode.ERROR: 2}.get(span.status.status_code, 0),
                       **({"message": span.status.description} if span.status.description else {})},
        } for span in group]}],
    } for resource, group in by_resource.items()]}


_provider: TracerProvider | None = None


def configure(endpoint: str | None = None, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Turn tracing on when an endpoint (default: $OTEL_EXPORTER_OTLP_ENDPOINT) or an exporter is given."""
    global _provider
    endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV, "")
    if not endpoint and exporter is None:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(exporter or OtlpJsonExporter(endpoint)))
    _provider = provider
    log.info("tracing on: spans to %s", endpoint or type(exporter).__name__)
    return provider


def shutdown() -> None:
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def enabled() -> bool:
    return _provider is not None


def tracer() -> trace.Tracer:
    return (_provider or trace.NoOpTracerProvider()).get_tracer("tritone.gateway")


@contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes):
    """A span (a no-op when tracing is off) that records an escaping exception as its error."""
    with tracer().start_as_current_span(name, kind=kind, attributes=attributes,
                                        record_exception=True, set_status_on_exception=True) as current:
        yield current


@contextmanager
def server_span(name: str, headers: dict[str, str], **attributes):
    """The span of one HTTP request, continuing the client's trace when it sent a traceparent."""
    if not enabled():
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(name, context=extract(headers), kind=SpanKind.SERVER, attributes=attributes,
                                        record_exception=True, set_status_on_exception=True) as current:
        yield current


def start(name: str, kind: SpanKind = SpanKind.CLIENT, **attributes) -> trace.Span:
    """A span that outlives a `with` block (a stream opened now, closed later): end it yourself."""
    return tracer().start_span(name, kind=kind, attributes=attributes)


@contextmanager
def within(current: trace.Span):
    """Make `current` the active span inside the block (what traceparent() sends)."""
    token = otel_context.attach(trace.set_span_in_context(current))
    try:
        yield
    finally:
        otel_context.detach(token)


def traceparent() -> dict[str, str]:
    """The current span's W3C trace context as headers/metadata (empty when tracing is off)."""
    carrier: dict[str, str] = {}
    if enabled():
        inject(carrier)
    return carrier


def mark_error(current, message: str) -> None:
    current.set_status(Status(StatusCode.ERROR, message))
