"""The MusicGen pipeline: prompt -> text conditioning -> in-flight batched LM -> audio chunks.

The Triton model `musicgen` is thin glue around this class: it passes in text-conditioning and
codec-decoder callables that call the `musicgen_text_conditioning` ensemble (tokenizer, then text
encoder) and the `musicgen_codec_decoder` model (BLS, dynamically batched). Tests build it with the
same chain in process (text_conditioning.TextConditioning over local ONNX Runtime sessions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.musicgen.metadata import (
    CHECKPOINT_DIR,
    LM_CROSS_KV_FILE,
    LM_STEP_FILE,
    MusicgenMetadata,
)
from tritone.ensemble.musicgen.request import GenerationParams, Limits, validate
from tritone.ensemble.engine.onnx_runtime import OnnxCodecDecoder
from tritone.ensemble.musicgen.onnx_lm import OnnxLanguageModel, OnnxTextEncoder
from tritone.ensemble.musicgen.decoding import Job, MusicgenFamily
from tritone.ensemble.engine.decode_thread import DecodeThread, load_on_decode_thread
from tritone.ensemble.engine.scheduler import Engine, Stream
from tritone.ensemble.engine.settings import EngineSettings, check_sample_rate
from tritone.ensemble.engine.lm_choice import resolve_lm
from tritone.ensemble.musicgen.text_conditioning import PromptTokenizer, TextConditioning, tokenizer_dir

TextConditioner = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]  # prompts -> hidden [B, E, D], mask [B, E]
CodecDecoder = Callable[[list[np.ndarray]], list[np.ndarray]]  # [codes [K, T], ...] -> [audio [T * hop], ...]


@dataclass(frozen=True)
class PipelineSettings(EngineSettings):
    """MusicGen's serving knobs beside the engine's (EngineSettings)."""

    model = T.MUSICGEN

    sample_rate: int = 32000  # declared in the config so clients can read it; must match the export
    policy: ChunkPolicy = field(default_factory=ChunkPolicy)
    limits: Limits = field(default_factory=Limits)


class MusicgenPipeline:
    def __init__(
        self,
        repository: Path,
        settings: PipelineSettings = PipelineSettings(),
        *,
        condition_text: TextConditioner | None = None,
        decode_codes: CodecDecoder | None = None,
        on_step=None,
        decode_thread: DecodeThread | None = None,
    ):
        repository = Path(repository)
        version = repository / T.MUSICGEN / "1"
        self.model = MusicgenMetadata.load(version)
        check_sample_rate(version, self.model.sample_rate, settings.sample_rate, "musicgen")
        self.settings = settings
        self.condition_text = condition_text or TextConditioning(
            PromptTokenizer(tokenizer_dir(repository), settings.limits.max_text_tokens),
            OnnxTextEncoder(repository / T.MUSICGEN_TEXT_ENCODER / "1" / T.ONNX_FILE))
        if decode_codes is None:
            decode_codes = OnnxCodecDecoder(repository / T.MUSICGEN_CODEC_DECODER / "1" / T.ONNX_FILE).each
        # the LM is loaded on the thread that will step it (ensemble/engine/decode_thread.py)
        decode_thread, lm = load_on_decode_thread(decode_thread, f"{T.MUSICGEN}-decode", self._language_model, version)
        self.family = MusicgenFamily(lm, self.model, settings.policy)
        self.engine = Engine.for_pipeline(self.family, decode_codes, settings, on_step=on_step,
                                          decode_thread=decode_thread)

    def _language_model(self, version: Path):
        settings = self.settings
        self.lm = resolve_lm(settings.lm_runtime, settings.device, settings.dtype)  # logged at load, exported
        if self.lm.runtime == "torch":
            from tritone.ensemble.musicgen.torch_lm import TorchLanguageModel  # torch is only needed on this path

            saved = version / CHECKPOINT_DIR
            checkpoint = saved if saved.is_dir() else self.model.checkpoint
            return TorchLanguageModel(checkpoint, settings.device, self.lm.dtype)
        return OnnxLanguageModel(version / LM_CROSS_KV_FILE, version / LM_STEP_FILE)

    def validate(self, raw: dict) -> GenerationParams:
        """Raises InvalidRequest naming the bad field."""
        model = self.model
        return validate(raw, self.settings.limits, model.codebook_size, model.num_codebooks, model.frame_rate)

    def submit(self, requests: list[tuple[GenerationParams, Stream]]) -> None:
        """Condition on a batch of prompts in one text-conditioning call, then queue each request.

        Raises InvalidRequest (a prompt too long) before anything is queued, or AtCapacity."""
        hidden, mask = self.condition_text([params.text for params, _ in requests])  # [B, E, D], [B, E]
        for row, (params, stream) in enumerate(requests):
            self.engine.submit(Job(params, hidden[row], mask[row], stream))
