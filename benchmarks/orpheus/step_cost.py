"""Speech's decode step against the batch: the engine driven locally (no Triton, codec stubbed), built-in
voices, N streams prefilled and then timed step by step, loaded and stepped on one thread as served,
with the CPU target's knobs (`lm_runtime`/`dtype` auto). One step is one token per stream, so the
decode-only ceiling is N / (step seconds * tokens per audio second): what served throughput is set against."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tritone.benchmarks.bf16 import time_steps
from tritone.benchmarks.orpheus import bf16 as part
from tritone.ensemble.engine.decode_thread import run_on_decode_thread


def engine_step_cost(repository: Path, streams: list[int], *, steps: int = 20, warmup: int = 3, log=print) -> dict:
    return {"engine": run_on_decode_thread("speech-step-cost", _measure, Path(repository), streams, steps, warmup, log)}


def _measure(repository: Path, streams: list[int], steps: int, warmup: int, log, decode_thread) -> list[dict]:
    marks: list[float] = []
    pipe = part.pipeline(repository, "auto", "auto", max(streams), lambda stats: marks.append(time.perf_counter()),
                         decode_thread)
    rate = part.steps_per_audio_second(pipe)
    results = []
    for n in streams:
        ms = np.asarray(time_steps(pipe, marks, part, n, steps, warmup))
        step_s = float(np.median(ms)) / 1e3
        results.append({
            "streams": n, "rows": n, "steps_timed": steps, "lm": str(pipe.lm),
            "ms_per_step": {"p50": float(np.median(ms)), "mean": float(ms.mean()), "min": float(ms.min()),
                            "max": float(ms.max())},
            "ms_per_request_step": float(np.median(ms)) / n,
            "decode_audio_s_per_wall_s": n / (step_s * rate),
        })
        log(f"  engine step with {n} streams: {np.median(ms):.1f} ms ({np.median(ms) / n:.1f} ms per request)")
    return results
