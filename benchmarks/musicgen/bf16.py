"""music's part of the bf16 benchmark (benchmarks/bf16.py): its pipeline on a chosen LM runtime and dtype,
driven locally (no Triton, codec stubbed), and its requests: PROMPTS and pairs of them, so that 20
prompts differ; MusicGen's guidance (3) as served."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritone.benchmarks.load import SEED
from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.metadata import MusicgenMetadata
from tritone.ensemble.musicgen.pipeline import MusicgenPipeline, PipelineSettings
from tritone.ensemble.musicgen import spec
from tritone.ensemble.musicgen.request import GenerationParams
from tritone.export.musicgen.tiny import PROMPTS

AGREEMENT_SECONDS = 2.0  # 100 frames per prompt
SAMPLED = {"temperature": 1.0, "top_k": 250}  # the timed streams sample as served (greedy changes no step cost)


def prompt(i: int) -> str:
    """Prompt i: PROMPTS[i] for the first ones, then pairs of them, all different."""
    n = len(PROMPTS)
    return PROMPTS[i] if i < n else f"{PROMPTS[i % n]}, {PROMPTS[(i // n + i) % n]}"


def pipeline(repository: Path, lm_runtime: str, dtype: str, slots: int, on_step, decode_thread=None) -> MusicgenPipeline:
    parameters = {**spec.PIPELINE.targets["cpu"].parameters,  # the CPU target's knobs, but:
                  "lm_runtime": lm_runtime, "dtype": dtype, "max_slots": str(slots), "max_queue": str(slots)}
    hop = MusicgenMetadata.load(Path(repository) / T.MUSICGEN / "1").hop_length
    return MusicgenPipeline(
        Path(repository), PipelineSettings.from_parameters(parameters),
        decode_codes=lambda windows: [np.zeros(w.shape[1] * hop, np.float32) for w, in windows],  # codec not timed
        on_step=on_step, decode_thread=decode_thread)


def steps_per_audio_second(pipe: MusicgenPipeline) -> float:
    return pipe.model.frame_rate


def submit(pipe: MusicgenPipeline, streams: list, seconds: float, greedy: bool) -> None:
    size = pipe.model.codebook_size
    sampling = {"temperature": 1.0, "top_k": 1} if greedy else {**SAMPLED, "top_k": min(SAMPLED["top_k"], size)}
    pipe.submit([(GenerationParams(text=prompt(i), duration=seconds, guidance_scale=3.0, seed=SEED + i,
                                   return_codes=True, **sampling), stream)
                 for i, stream in enumerate(streams)])
