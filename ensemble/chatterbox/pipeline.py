"""The Chatterbox pipeline: text (+ a voice) -> T3 speech tokens (in-flight batched) -> flow + HiFT audio chunks.

The Triton model `chatterbox` is thin glue around this class: it passes in callables that call
`chatterbox_voice` (a reference clip -> the voice's conditioning) and `chatterbox_codec` (a window
of speech tokens + the voice -> audio) as Triton models (BLS, dynamically batched). Tests build it
with local ONNX Runtime sessions.

A reference clip is turned into its voice once: the conditioning is cached by the clip's content
hash (`ClipCache`), so a client sending the same clip with every sentence pays the voice model once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.codec import (CHATTERBOX_POLICY, ChatterboxCodec, CodecInputs, OnnxCodec,
                                              OnnxVoiceModel)
from tritone.ensemble.chatterbox.decoding import ChatterboxFamily, ChatterboxJob, EmbeddingTables
from tritone.ensemble.chatterbox.metadata import CHECKPOINT_DIR, TOKENIZER_FILE, VOICES_DIR, ChatterboxMetadata
from tritone.ensemble.chatterbox.onnx_lm import (CONDITIONING_FILE, LLAMA_CONFIG_FILE, LM_STEP_FILE,
                                                 OnnxT3Conditioning, OnnxT3LanguageModel, load_tables)
from tritone.ensemble.chatterbox.request import ChatterboxLimits, ChatterboxParams, validate
from tritone.ensemble.chatterbox.text import TextTokenizer
from tritone.ensemble.chatterbox.voice import Voice
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.engine.clip_cache import ClipCache
from tritone.ensemble.engine.decode_thread import DecodeThread, load_on_decode_thread
from tritone.ensemble.engine.lm_choice import resolve_lm
from tritone.ensemble.engine.request_fields import InvalidRequest
from tritone.ensemble.engine.scheduler import Engine, Stream
from tritone.ensemble.engine.settings import EngineSettings, check_sample_rate, check_speakers

VoiceModel = Callable[[np.ndarray], dict]  # a clip [S] at 24 kHz -> the voice's arrays by name
CodecDecoder = Callable[[list[tuple[np.ndarray, ...]]], list[np.ndarray]]  # [(tokens [1, W], *inputs)] -> audio


@dataclass(frozen=True)
class ChatterboxSettings(EngineSettings):
    """Chatterbox's serving knobs beside the engine's (EngineSettings)."""

    model = T.CHATTERBOX

    sample_rate: int = 24000  # declared in the config so clients can read it; must match the export
    speakers: str = ""  # the export's built-in voices, comma-separated, declared for clients; "": not declared
    prefill_chunk: int = 32  # most prompt tokens a request feeds per step while others decode
    step_tokens: int = 4096  # most tokens (rows x width, padding included) in one step while someone prefills
    reference_cache: int = 64  # voices of reference clips kept, by content hash
    prefix_cache_bytes: int = 0  # voices' prefilled conditioning kept (keys/values), LRU; 0: off (spec: per target)
    codec_batch: int = 8  # codec windows per call (chatterbox_codec's max_batch_size on the target)
    policy: ChunkPolicy = field(default_factory=lambda: CHATTERBOX_POLICY)
    limits: ChatterboxLimits = field(default_factory=ChatterboxLimits)


class ChatterboxPipeline:
    def __init__(
        self,
        repository: Path,
        settings: ChatterboxSettings = ChatterboxSettings(),
        *,
        voice_model: VoiceModel | None = None,
        decode_codes: CodecDecoder | None = None,
        on_step=None,
        decode_thread: DecodeThread | None = None,
    ):
        repository = Path(repository)
        version = repository / T.CHATTERBOX / "1"
        self.model = ChatterboxMetadata.load(version)
        check_sample_rate(version, self.model.sample_rate, settings.sample_rate, T.CHATTERBOX)
        check_speakers(version, self.model.voices, settings.speakers, T.CHATTERBOX)
        self.settings = settings
        self.tokenizer = TextTokenizer(version / TOKENIZER_FILE)
        self.voices = {name: Voice.load(version / VOICES_DIR / f"{name}.npz") for name in self.model.voices}
        voice_model = voice_model or OnnxVoiceModel(repository / T.CHATTERBOX_VOICE / "1" / T.ONNX_FILE)
        self.references = ClipCache(lambda clip: Voice.from_arrays(voice_model(clip)), settings.reference_cache)
        if decode_codes is None:
            decode_codes = ChatterboxCodec(OnnxCodec(repository), settings.codec_batch).each
        # the LM is loaded on the thread that will step it (ensemble/engine/decode_thread.py)
        decode_thread, lm = load_on_decode_thread(decode_thread, f"{T.CHATTERBOX}-decode", self._language_model,
                                                  version)
        self.family = ChatterboxFamily(lm, OnnxT3Conditioning(version / CONDITIONING_FILE), self.model,
                                       EmbeddingTables.of(load_tables(version)), settings.policy, CodecInputs())
        self.engine = Engine.for_pipeline(self.family, decode_codes, settings, on_step=on_step,
                                          decode_thread=decode_thread)

    def _language_model(self, version: Path):
        settings = self.settings
        self.lm = resolve_lm(settings.lm_runtime, settings.device, settings.dtype)  # logged at load
        if self.lm.runtime == "torch":
            from tritone.ensemble.chatterbox.torch_lm import T3_WEIGHTS_FILE, TorchT3LanguageModel  # torch only here

            weights = version / CHECKPOINT_DIR  # the random checkpoints' files; else the checkpoint's own folder
            if not weights.is_dir():
                weights = Path(self.model.checkpoint)
            if not weights.is_dir():  # a hub id: its files are in the local hub cache since the export
                from huggingface_hub import hf_hub_download

                weights = Path(hf_hub_download(self.model.checkpoint, T3_WEIGHTS_FILE)).parent
            return TorchT3LanguageModel(weights, version / LLAMA_CONFIG_FILE, settings.device, self.lm.dtype)
        return OnnxT3LanguageModel(version / LM_STEP_FILE)

    def validate(self, raw: dict) -> ChatterboxParams:
        """Raises InvalidRequest naming the bad field."""
        return validate(raw, self.model, self.settings.limits)

    def text_ids(self, text: str) -> np.ndarray:
        ids = self.tokenizer.ids(text)
        limit = min(self.settings.limits.max_text_tokens, self.model.max_text_tokens)
        if len(ids) > limit:
            raise InvalidRequest(T.TEXT, f"is {len(ids)} tokens long; the limit is {limit} (send a sentence at a time)")
        return np.array([self.model.start_text, *ids, self.model.stop_text], np.int64)

    def voice(self, params: ChatterboxParams) -> Voice:
        """The request's voice: its reference clip's (computed once per clip content), or a built-in one."""
        if params.reference_audio is not None:
            return self.references.get(params.reference_audio)
        return self.voices[params.voice or self.model.voices[0]]

    def token_limit(self, params: ChatterboxParams) -> int:
        """max_duration in speech tokens, or fewer where T3's speech positions end (then speech stops there)."""
        return min(params.token_limit(self.model), self.model.max_speech_tokens)

    def submit(self, params: ChatterboxParams, stream: Stream) -> None:
        """Raises InvalidRequest (text too long) before anything is queued, or AtCapacity."""
        text_ids = self.text_ids(params.text)
        self.engine.submit(ChatterboxJob(params, text_ids, self.voice(params), self.token_limit(params), stream))
