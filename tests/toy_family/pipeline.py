"""The toy pipeline: text -> its UTF-8 bytes as the prompt -> the engine -> the toy codec, in chunks.

Its Triton model (triton.py) passes the codec as a BLS call to `toy_codec`; a test may pass `decode_frames`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.engine.request_fields import InvalidRequest, finite, utf8_text
from tritone.ensemble.engine.scheduler import Engine, Stream
from tritone.ensemble.engine.settings import check_sample_rate, from_parameters

from tests.toy_family.decoding import ToyFamily, ToyJob
from tests.toy_family.export import METADATA_FILE
from tests.toy_family.spec import FRAME_SAMPLES, PIPELINE_NAME, POLICY


@dataclass(frozen=True)
class ToyLimits:
    max_text_chars: int = 0  # every limit comes from the spec, through the config's parameters
    max_duration_s: float = 0.0


@dataclass(frozen=True)
class ToySettings:
    max_slots: int = 1
    max_queue: int = 0
    prefill_chunk: int = 1
    step_tokens: int = 1
    sample_rate: int = 0
    policy: ChunkPolicy = field(default_factory=lambda: POLICY)
    limits: ToyLimits = field(default_factory=ToyLimits)

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]) -> "ToySettings":
        return from_parameters(cls, parameters, PIPELINE_NAME)


@dataclass(frozen=True)
class ToyMetadata:
    checkpoint: str
    sample_rate: int


@dataclass(frozen=True)
class ToyParams:
    prompt: np.ndarray
    frames: int
    return_codes: bool


class ToyPipeline:
    def __init__(self, repository: Path, settings: ToySettings,
                 decode_codes: Callable[[list[tuple[np.ndarray, ...]]], list[np.ndarray]], on_step=None):
        version = Path(repository) / PIPELINE_NAME / "1"
        self.model = ToyMetadata(**json.loads((version / METADATA_FILE).read_text()))
        check_sample_rate(version, self.model.sample_rate, settings.sample_rate, PIPELINE_NAME)
        self.settings = settings
        self.family = ToyFamily(settings.policy)
        self.engine = Engine.for_pipeline(self.family, decode_codes, settings, on_step=on_step)

    def validate(self, raw: dict) -> ToyParams:
        """Raises InvalidRequest naming the bad field."""
        limits = self.settings.limits
        text = utf8_text(raw, T.TEXT, limits.max_text_chars)
        if T.DURATION not in raw:
            raise InvalidRequest(T.DURATION, "is required")
        duration = finite(T.DURATION, raw[T.DURATION])
        if not 0 < duration <= limits.max_duration_s:
            raise InvalidRequest(T.DURATION, f"must be in (0, {limits.max_duration_s:g}] seconds, got {duration:g}")
        frames = max(1, round(duration * self.model.sample_rate / FRAME_SAMPLES))
        prompt = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64)
        return ToyParams(prompt, frames, bool(raw.get(T.RETURN_CODES, False)))

    def submit(self, params: ToyParams, stream: Stream) -> None:
        self.engine.submit(ToyJob(params.prompt, params.frames, params.return_codes, stream))
