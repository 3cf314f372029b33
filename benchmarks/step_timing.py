"""Timing an engine's decode steps locally (no Triton): what the step-cost and bf16 recipes share."""

from __future__ import annotations

import time

import numpy as np


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


def step_row(streams: int, rows: int, ms: list[float], steps_per_audio_s: float, log=print) -> dict:
    """One batch size's timed steps (ms) as the step-cost tables show them; the decode-only ceiling is the
    audio seconds per wall second the LM step alone would give: streams / (step seconds * steps per audio s)."""
    ms = np.asarray(ms, dtype=float)
    p50 = float(np.median(ms))
    row = {"streams": streams, "rows": rows,
           "ms_per_step": {"p50": p50, "mean": float(ms.mean()), "min": float(ms.min()), "max": float(ms.max())},
           "ms_per_request_step": p50 / streams, "steps_timed": int(ms.size),
           "decode_audio_s_per_wall_s": streams / (p50 / 1e3 * steps_per_audio_s)}
    log(f"  engine step with {streams} streams: {p50:.1f} ms ({p50 / streams:.1f} ms per request)")
    return row
