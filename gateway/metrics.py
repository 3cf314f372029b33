"""The gateway's Prometheus metrics (Triton's own, and the engine's, are on Triton's metrics port).

Names follow Prometheus' conventions: base units in the name (`_seconds`, `_bytes`, `_ratio`),
counters end in `_total`, and per-model series carry a `model` label (tests/unit/test_metric_names.py).
"""

from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector,
                               disable_created_metrics)

disable_created_metrics()  # no `_created` series beside every counter and histogram: noise to every scraper


class GatewayMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=self.registry)  # python_info
        self.requests = Counter("tritone_gateway_requests_total", "HTTP requests", ["route", "status"],
                                registry=self.registry)
        self.errors = Counter("tritone_gateway_errors_total", "Errors by kind", ["kind"], registry=self.registry)
        self.request_duration = Histogram(
            "tritone_gateway_request_duration_seconds", "HTTP request received to response ended (a stream: its end)",
            ["route", "status"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry)
        self.time_to_first_audio = Histogram(
            "tritone_gateway_time_to_first_audio_seconds", "Request received to first audio chunk from Triton",
            ["model"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=self.registry)
        self.real_time_factor = Histogram(
            "tritone_gateway_real_time_factor_ratio", "Wall seconds per audio second of a completed stream",
            ["model"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8), registry=self.registry)
        self.audio = Counter("tritone_gateway_audio_seconds_total", "Seconds of audio streamed to clients",
                             ["model"], registry=self.registry)
        self.active_streams = Gauge("tritone_gateway_active_streams", "Generation streams open to Triton",
                                    registry=self.registry)
        self.queued_jobs = Gauge("tritone_gateway_jobs_queued", "Jobs waiting to run", registry=self.registry)
        self.streams_failed = Counter(
            "tritone_gateway_streams_failed_total",
            "HTTP streams that failed after their first byte: audio aborted without its end, SSE ended by an error event",
            registry=self.registry)
        self.streams_retried = Counter(
            "tritone_gateway_streams_retried_total",
            "Streams refused by a Triton replica before their first chunk and opened once more (the next replica), "
            "by the refusal's code", ["kind"], registry=self.registry)
        self.model_reloads = Counter("tritone_gateway_model_reloads_total",
                                     "Reloads of a model the gateway found unhealthy, by outcome",
                                     ["model", "outcome"], registry=self.registry)
