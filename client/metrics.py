"""The musicgen engine's counters, read from Triton's metrics endpoint."""

from __future__ import annotations

import urllib.request


def read_engine_metrics(metrics_url: str) -> dict[str, float]:
    """tritone_* metric name -> value (one label set per name on a single-pipeline server)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tritone_"):
            name_labels, value = line.rsplit(" ", 1)
            values[name_labels.split("{")[0]] = float(value)
    return values
