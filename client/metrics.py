"""The engines' counters (musicgen, orpheus), read from Triton's metrics endpoint."""

from __future__ import annotations

import re
import urllib.request

_LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def read_engine_metrics(metrics_url: str, model: str | None = None) -> dict[str, float]:
    """tritone_* metric name -> value.

    Each engine labels its metrics with model="<name>": with `model`, only that engine's values;
    without, the sum over every engine (so 0 active slots means none anywhere).
    """
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tritone_"):
            name_labels, value = line.rsplit(" ", 1)
            name, _, labels = name_labels.partition("{")
            if model is not None and dict(_LABELS.findall(labels)).get("model") != model:
                continue
            values[name] = values.get(name, 0.0) + float(value)
    return values
