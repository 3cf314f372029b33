"""speech's part of the bf16 benchmark (benchmarks/bf16.py): its pipeline on a chosen LM runtime and dtype,
driven locally (no Triton, codec stubbed), and its requests: the built-in voices in turn speaking
SENTENCES and pairs of them, so that 20 prompts differ; repetition penalty 1 (plain greedy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritone.benchmarks.load import SEED
from tritone.ensemble.orpheus.pipeline import OrpheusPipeline, OrpheusSettings
from tritone.ensemble.orpheus import spec
from tritone.ensemble.orpheus.request import OrpheusParams
from tritone.export.orpheus.tiny import SENTENCES

AGREEMENT_SECONDS = 3.0  # 35 frames (245 LM tokens) per prompt


def sentence(i: int) -> str:
    """Sentence i: SENTENCES[i] for the first ones, then pairs of them, all different."""
    n = len(SENTENCES)
    return SENTENCES[i] if i < n else f"{SENTENCES[i % n]} {SENTENCES[(i // n + i) % n]}"


def pipeline(repository: Path, lm_runtime: str, dtype: str, slots: int, on_step, decode_thread=None) -> OrpheusPipeline:
    parameters = {**spec.PIPELINE.targets["cpu"].parameters,  # the CPU target's knobs, but:
                  "lm_runtime": lm_runtime, "dtype": dtype, "max_slots": str(slots), "max_queue": str(slots)}
    return OrpheusPipeline(
        Path(repository), OrpheusSettings.from_parameters(parameters),
        encode_audio=lambda audio: None,  # built-in voices only: no reference clip to encode
        decode_codes=lambda windows: [np.zeros(w.shape[1] * spec.FRAME_SAMPLES, np.float32) for w, in windows],
        on_step=on_step, decode_thread=decode_thread)


def steps_per_audio_second(pipe: OrpheusPipeline) -> float:
    return pipe.model.tokens_per_second  # one LM step is one token


def submit(pipe: OrpheusPipeline, streams: list, seconds: float, greedy: bool) -> None:
    voices = pipe.model.voices
    for i, stream in enumerate(streams):
        params = OrpheusParams(text=sentence(i), max_duration=seconds, voice=voices[i % len(voices)] if voices else None,
                               top_k=1 if greedy else 50, temperature=0.6, top_p=0.8 if not greedy else 1.0,
                               repetition_penalty=1.0, seed=SEED + i, return_codes=True)
        pipe.submit(params, stream)
