"""OpenTelemetry tracing through a real gateway and tritonserver: an HTTP request's span, its gRPC stream's
child span with the request id, the client's traceparent continued, and the OTLP JSON a collector receives."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tritone.gateway import tracing
from tritone.gateway.main import create_app
from tritone.serving.triton import free_port

pytestmark = pytest.mark.integration

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def speak(settings, **headers) -> httpx.Response:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client:
            return await client.post("/v1/audio/speech", headers=headers, timeout=60,
                                     json={"input": "Hello there.", "voice": "tara", "response_format": "pcm"})


def test_a_request_and_its_triton_stream_are_spans_of_the_clients_trace(gateway_settings):
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter)
    try:
        response = asyncio.run(speak(gateway_settings, **{
            "X-Request-Id": "req_traced", "traceparent": f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"}))
    finally:
        tracing.shutdown()  # flushes the batch
    assert response.status_code == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    http, stream = spans["POST /v1/audio/speech"], spans["triton stream orpheus"]
    assert f"{http.context.trace_id:032x}" == CLIENT_TRACE  # the client's trace continues
    assert http.parent.span_id == 0x00f067aa0ba902b7
    assert stream.parent.span_id == http.context.span_id and stream.context.trace_id == http.context.trace_id
    assert http.attributes["http.response.status_code"] == 200 and http.attributes["tritone.request_id"] == "req_traced"
    assert stream.attributes["tritone.request_id"] == "req_traced" and stream.attributes["tritone.completed"] is True
    assert stream.attributes["tritone.output_tokens"] > 0 and stream.status.is_ok


def test_spans_reach_an_otlp_http_collector_as_json(gateway_settings, monkeypatch):
    received = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server name
            received.append((self.path, self.headers["Content-Type"],
                             json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(tracing.ENDPOINT_ENV, f"http://127.0.0.1:{server.server_port}")
    try:
        assert asyncio.run(speak(gateway_settings)).status_code == 200  # the lifespan turns tracing on and off
    finally:
        server.shutdown()
    assert not tracing.enabled()
    path, content_type, body = received[0]
    assert (path, content_type) == ("/v1/traces", "application/json")
    resource = body["resourceSpans"][0]
    assert {"key": "service.name", "value": {"stringValue": "tritone-gateway"}} in resource["resource"]["attributes"]
    names = {span["name"] for group in resource["scopeSpans"] for span in group["spans"]}
    assert {"POST /v1/audio/speech", "triton stream orpheus"} <= names
    span = resource["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16 and int(span["endTimeUnixNano"]) > 0


def test_tracing_is_off_without_an_endpoint(monkeypatch):
    monkeypatch.delenv(tracing.ENDPOINT_ENV, raising=False)
    assert tracing.configure() is None and not tracing.enabled() and tracing.traceparent() == {}
