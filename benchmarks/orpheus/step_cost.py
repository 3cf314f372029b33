"""Speech's decode step against the batch: the engine driven locally (no Triton, codec stubbed), built-in
voices, N streams prefilled and then timed step by step, loaded and stepped on one thread as served,
with the CPU target's knobs (`lm_runtime`/`dtype` auto). One step is one token per stream, so the
decode-only ceiling is N / (step seconds * tokens per audio second): what served throughput is set against."""

from __future__ import annotations

import time
from pathlib import Path

from tritone.benchmarks.bf16 import time_steps
from tritone.benchmarks.step_timing import step_row
from tritone.benchmarks.orpheus import bf16 as part
from tritone.ensemble.engine.decode_thread import run_on_decode_thread


def engine_step_cost(repository: Path, streams: list[int], *, steps: int = 20, warmup: int = 3, log=print) -> dict:
    return {"engine": run_on_decode_thread("speech-step-cost", _measure, Path(repository), streams, steps, warmup, log)}


def _measure(repository: Path, streams: list[int], steps: int, warmup: int, log, decode_thread) -> list[dict]:
    marks: list[float] = []
    pipe = part.pipeline(repository, "auto", "auto", max(streams), lambda stats: marks.append(time.perf_counter()),
                         decode_thread)
    rate = part.steps_per_audio_second(pipe)
    return [{**step_row(n, n, time_steps(pipe, marks, part, n, steps, warmup), rate, log), "lm": str(pipe.lm)}
            for n in streams]
