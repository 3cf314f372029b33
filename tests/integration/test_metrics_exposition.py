"""The metrics a Prometheus server scrapes, from a real gateway and tritonserver: parseable, named by the
Prometheus conventions (base units, `_total` counters), labelled by model, histograms whole."""

from __future__ import annotations

import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .stack import run_gateway

pytestmark = pytest.mark.integration

NAME = re.compile(r"[a-z_][a-z0-9_]*")
OURS = ("tritone_",)


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def check_conventions(found: dict) -> None:
    for name, family in found.items():
        assert NAME.fullmatch(name), name
        if not name.startswith(OURS):
            continue
        assert not re.search(r"_(ms|milliseconds|kb|mb|percent)(_|$)", name), f"{name}: use base units"
        if family.type == "counter":  # the parser drops _total from a counter family's name; its samples keep it
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples) or name.endswith(
                ("_bucket", "_sum", "_count")), f"{name}: a counter's samples end in _total"
        if family.type == "gauge":
            assert not name.endswith("_total"), f"{name}: a gauge is not a _total"
        if "seconds" in name or "time" in name:
            assert "_seconds" in name or name.endswith(("_ratio", "_info")), f"{name}: times in seconds"


def test_gateway_and_engine_metrics_follow_the_conventions_and_carry_the_model(gateway_settings, triton_stack):
    with run_gateway(gateway_settings) as url:
        spoken = httpx.post(f"{url}/v1/audio/speech", timeout=60,
                            json={"input": "Hello there.", "voice": "tara", "response_format": "pcm"})
        assert spoken.status_code == 200
        gateway = families(httpx.get(f"{url}/metrics").text)
    triton = families(httpx.get(triton_stack.metrics_url).text)
    check_conventions(gateway)
    check_conventions(triton)

    ttfa = gateway["tritone_gateway_time_to_first_audio_seconds"]
    assert ttfa.type == "histogram"
    assert {s.labels["model"] for s in ttfa.samples if s.name.endswith("_count")} >= {"orpheus"}
    audio = [s for s in gateway["tritone_gateway_audio_seconds"].samples
             if s.name == "tritone_gateway_audio_seconds_total" and s.labels == {"model": "orpheus"}]
    assert audio and audio[0].value == pytest.approx(len(spoken.content) / 2 / 24000)
    assert gateway["tritone_gateway_request_duration_seconds"].type == "histogram"
    assert "process_resident_memory_bytes" in gateway and "process_cpu_seconds" in gateway

    # the engine's decode-step histogram: cumulative buckets ending in +Inf, which equals the count
    buckets = sorted((s for s in triton["tritone_decode_step_seconds_bucket"].samples if s.labels["model"] == "orpheus"),
                     key=lambda s: float(s.labels["le"]))
    bounds = [float(s.labels["le"]) for s in buckets]
    assert bounds == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, float("inf")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and counts[-1] > 0
    count = [s.value for s in triton["tritone_decode_step_seconds_count"].samples if s.labels["model"] == "orpheus"]
    assert count == [counts[-1]]
    # Triton's own latency quantiles (--metrics-config summary_latencies=true: 2.51 has no latency histograms)
    summary = triton["nv_inference_request_summary_us"]
    assert summary.type == "summary" and any(s.labels.get("model") == "orpheus" for s in summary.samples)
