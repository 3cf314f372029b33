"""Timing an engine's decode steps locally (no Triton): what the step-cost and bf16 recipes share."""

from __future__ import annotations

import time


def time_decode_steps(engine, marks: list[float], *, warmup: int, steps: int) -> list[float]:
    """Seconds from the start of each of `steps` engine steps (after `warmup` untimed ones) to the end
    of its LM step: `marks` is filled by the pipeline's on_step hook (time.perf_counter())."""
    times = []
    for i in range(warmup + steps):
        marks.clear()
        started = time.perf_counter()
        engine.run_once(emit_inline=True)
        if i >= warmup:
            times.append(marks[0] - started)
    return times
