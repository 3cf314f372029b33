"""One request's log lines, gateway to engine, share one request id: the gateway's access log, and the
engine's admission and completion lines in tritonserver's output (the id travels as the gRPC request id)."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import pytest

from tritone.serving.log_format import JsonFormatter

from .stack import run_gateway

pytestmark = pytest.mark.integration


def lines_with(path, text: str, count: int, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in path.read_text(errors="replace").splitlines() if text in line]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_speech_request_is_logged_under_one_id_by_the_gateway_and_the_engine(gateway_settings, triton_stack):
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    gateway_log = logging.getLogger("tritone.gateway")
    try:
        with run_gateway(gateway_settings.model_copy(update={"api_keys": ["sk-logs"], "log_format": "json"})) as url:
            gateway_log.addHandler(handler)
            response = httpx.post(f"{url}/v1/audio/speech", timeout=60,
                                  headers={"X-Request-Id": "req_trace_42", "Authorization": "Bearer sk-logs"},
                                  json={"input": "Hello there.", "voice": "tara", "response_format": "pcm"})
    finally:  # the access line is written once the response has ended: after the server stops at the latest
        gateway_log.removeHandler(handler)
    assert response.status_code == 200 and response.headers["x-request-id"] == "req_trace_42"

    entries = [json.loads(line) for line in captured.getvalue().splitlines()]
    access = [e for e in entries if e["logger"] == "tritone.gateway.access" and e["path"] == "/v1/audio/speech"]
    assert len(access) == 1
    assert (access[0]["request_id"], access[0]["method"], access[0]["status"]) == ("req_trace_42", "POST", 200)
    assert access[0]["key"].startswith("key_") and "sk-logs" not in captured.getvalue()  # a digest, never the key

    engine = lines_with(triton_stack.log_path, "req_trace_42", 2)
    assert any("orpheus request admitted" in line for line in engine), engine
    assert any("orpheus request completed" in line for line in engine), engine


def test_json_lines_carry_time_level_logger_id_message_and_extras():
    record = logging.makeLogRecord({"name": "tritone.gateway", "levelno": logging.INFO, "levelname": "INFO",
                                    "msg": "job %s: started", "args": ("job_1",), "request_id": "job_1",
                                    "job": "job_1"})
    entry = json.loads(JsonFormatter().format(record))
    assert {key: entry[key] for key in ("level", "logger", "request_id", "message", "job")} == {
        "level": "info", "logger": "tritone.gateway", "request_id": "job_1", "message": "job job_1: started",
        "job": "job_1"}
    assert entry["time"].endswith("+00:00")
