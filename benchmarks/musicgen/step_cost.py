"""How the cost of a decode step grows with the batch.

- tritone's engine, driven locally (no Triton): MusicgenPipeline with the exported ONNX graphs,
  N streams admitted at once, then `engine.run_once()` timed step by step up to the end of the
  decode step (the `on_step` hook), so admission (cross-attention K/V) and the codec are out;
- transformers' eager decode step for one request with guidance (2 rows): generate() timed for
  two `max_new_tokens` with the codec decode stubbed out; the difference per step leaves the
  text encoder and the set-up out, and keeps what a step costs: the decoder forward over both
  rows, guidance, top-k and sampling.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tritone.benchmarks.musicgen.load import Sampling, workload
from tritone.benchmarks.step_timing import step_row, time_decode_steps
from tritone.ensemble.engine.decode_thread import run_on_decode_thread
from tritone.ensemble.musicgen import spec as musicgen_spec
from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.metadata import MusicgenMetadata
from tritone.ensemble.musicgen.pipeline import MusicgenPipeline, PipelineSettings
from tritone.ensemble.musicgen.request import GenerationParams


class _Sink:
    """A stream that takes chunks and drops them."""

    def __init__(self):
        self.error = None
        self.stopped = False

    def cancelled(self) -> bool:
        return self.stopped

    def send(self, chunk) -> None:
        pass

    def fail(self, error) -> None:
        self.error = error

    def close(self) -> None:
        pass


def _settings(max_slots: int) -> PipelineSettings:
    parameters = dict(musicgen_spec.PIPELINE.targets["cpu"].parameters)  # the CPU target's knobs
    parameters.update(max_slots=str(max_slots), max_queue=str(max_slots))
    return PipelineSettings.from_parameters(parameters)


def engine_step_cost(repository: Path, streams: list[int], *, steps: int = 20, warmup: int = 3,
                     sampling: Sampling = Sampling(), log=print) -> list[dict]:
    """ms per decode step of the local engine with N = each of `streams` requests in the batch, loaded
    and stepped on one thread as the served engine is (ensemble/engine/decode_thread.py)."""
    return run_on_decode_thread("step-cost", _engine_step_cost, repository, streams, steps=steps, warmup=warmup,
                                sampling=sampling, log=log)


def _engine_step_cost(repository: Path, streams: list[int], *, steps: int, warmup: int, sampling: Sampling, log,
                      decode_thread) -> list[dict]:
    marks: list[float] = []
    hop = MusicgenMetadata.load(Path(repository) / T.MUSICGEN / "1").hop_length
    pipeline = MusicgenPipeline(
        Path(repository),
        _settings(max(streams)),
        decode_codes=lambda windows: [np.zeros(w.shape[1] * hop, np.float32) for w, in windows],  # codec not timed
        on_step=lambda stats: marks.append(time.perf_counter()),
        decode_thread=decode_thread,
    )
    engine, model = pipeline.engine, pipeline.model
    duration = (steps + warmup + 8) / model.frame_rate  # long enough that nobody finishes while timed
    results = []
    for n in streams:
        sinks = [_Sink() for _ in range(n)]
        params = [GenerationParams(text=prompt, duration=duration, temperature=sampling.temperature,
                                   top_k=sampling.top_k_for(model.codebook_size),
                                   guidance_scale=sampling.guidance_scale, seed=seed)
                  for prompt, seed in workload(n)]
        pipeline.submit(list(zip(params, sinks)))
        engine.run_once(emit_inline=True)  # admits all n (cross K/V) and runs their first step: not timed
        if len(engine.active) != n:
            raise RuntimeError(f"expected {n} active requests, got {len(engine.active)}")
        times = time_decode_steps(engine, marks, warmup=warmup, steps=steps)
        position = engine.active[0].step
        for sink in sinks:
            sink.stopped = True
        engine.run_once(emit_inline=True)  # drops them: the batch buffers are given back
        errors = [str(s.error) for s in sinks if s.error is not None]
        if errors:
            raise RuntimeError(f"the engine failed a request: {errors[0]}")
        result = step_row(n, n * (2 if sampling.guidance_scale > 1 else 1), np.asarray(times) * 1e3, model.frame_rate,
                          log)
        result["positions"] = [position - steps, position]
        results.append(result)
    return results


def transformers_decode_step(model, tokenizer, *, short: int = 10, long: int = 60, repeats: int = 3,
                             sampling: Sampling = Sampling(), log=print) -> dict:
    """ms per eager decode step of generate() for one request with guidance (text encoder, codec out)."""
    import torch

    from tritone.benchmarks.musicgen.baseline import generate

    prompt = workload(1)[0][0]
    decode = model.audio_encoder.decode

    def no_codec(audio_codes, *args, **kwargs):
        return SimpleNamespace(audio_values=torch.zeros(audio_codes.shape[1], 1, audio_codes.shape[-1]))

    model.audio_encoder.decode = no_codec
    try:
        generate(model, tokenizer, [prompt], short, sampling, 0)  # warm-up
        timings = {short: [], long: []}
        for r in range(repeats):
            for tokens in (short, long):
                timings[tokens].append(generate(model, tokenizer, [prompt], tokens, sampling, r)[0])
    finally:
        model.audio_encoder.decode = decode
    t_short, t_long = min(timings[short]), min(timings[long])  # min: the least disturbed run of each
    ms = (t_long - t_short) / (long - short) * 1e3
    log(f"  transformers eager decode step (1 request, guidance): {ms:.1f} ms")
    return {
        "ms_per_step": ms,
        "rows": 2 if sampling.guidance_scale > 1 else 1,
        "max_new_tokens": [short, long],
        "generate_s": {str(short): timings[short], str(long): timings[long]},
        "method": "(min generate() time at the long length - at the short length) / step difference, codec stubbed",
    }


def step_cost_summary(engine: list[dict], eager: dict | None) -> dict:
    one = next((r for r in engine if r["streams"] == 1), None)
    return {
        "engine": engine,
        "transformers_eager": eager,
        "engine_vs_eager_one_stream": (one["ms_per_step"]["p50"] / eager["ms_per_step"])
        if one and eager and eager["ms_per_step"] > 0 else None,
    }

