"""The speech pipeline: text (+ a voice) -> Orpheus prompt -> in-flight batched LM -> SNAC audio chunks.

The Triton model `orpheus` is thin glue around this class: it passes in codec callables that
call the `snac_encoder` / `snac_decoder` Triton models (BLS, dynamically batched). Tests build
it with local ONNX Runtime sessions.

A reference clip sent as audio is encoded once: its codes are cached by the clip's content
hash (`ClipCache`), so a client that sends the same voice with every sentence pays the
encoder once; and its prefilled turn (transcript + codes) is kept by the engine's prefix cache
(`prefix_cache_bytes`), so every later request in that voice prefills only its own text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.chunker import ChunkPolicy
from tritone.ensemble.engine.clip_cache import ClipCache
from tritone.ensemble.engine.onnx_runtime import OnnxAudioEncoder, OnnxCodecDecoder
from tritone.ensemble.orpheus.onnx_lm import OnnxSpeechLanguageModel
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.engine.request_fields import InvalidRequest
from tritone.ensemble.engine.decode_thread import DecodeThread, load_on_decode_thread
from tritone.ensemble.engine.scheduler import Engine, Stream
from tritone.ensemble.engine.settings import EngineSettings, check_sample_rate, check_speakers
from tritone.ensemble.engine.lm_choice import resolve_lm
from tritone.ensemble.orpheus.decoding import OrpheusFamily, OrpheusJob
from tritone.ensemble.orpheus.metadata import CHECKPOINT_DIR, LM_STEP_FILE, TOKENIZER_DIR, OrpheusMetadata
from tritone.ensemble.orpheus.request import OrpheusLimits, OrpheusParams, validate

AudioEncoder = Callable[[np.ndarray], np.ndarray]  # audio [1, S] -> codes [1, 7, F]
CodecDecoder = Callable[[list[np.ndarray]], list[np.ndarray]]  # [codes [7, F], ...] -> [audio [F * 2048], ...]

# SNAC 24 kHz frames are 2048 samples (85 ms). The decoder is convolutional and not causal:
# each chunk is decoded with left context and lookahead (ensemble/chunker.py); these cover its
# receptive field so that streamed audio equals a one-shot decode (tests/unit/test_orpheus_engine.py).
ORPHEUS_POLICY = ChunkPolicy(first_frames=3, growth=2.0, max_chunk_frames=24, left_context=3, lookahead=3, min_window=1)


@dataclass(frozen=True)
class OrpheusSettings(EngineSettings):
    """Orpheus's serving knobs beside the engine's (EngineSettings)."""

    model = T.ORPHEUS

    sample_rate: int = 24000  # declared in the config so clients can read it; must match the export
    speakers: str = ""  # the export's built-in speakers, comma-separated, declared for clients; "": not declared
    prefill_chunk: int = 32  # most prompt tokens a request feeds per step while others decode
    step_tokens: int = 4096  # most tokens (rows x width, padding included) in one step while someone prefills
    reference_cache: int = 64  # encoded reference clips kept, by content hash
    prefix_cache_bytes: int = 0  # cloned voices' prefilled turns kept (keys/values), LRU; 0: off (spec: per target)
    policy: ChunkPolicy = field(default_factory=lambda: ORPHEUS_POLICY)
    limits: OrpheusLimits = field(default_factory=OrpheusLimits)


class OrpheusPipeline:
    def __init__(
        self,
        repository: Path,
        settings: OrpheusSettings = OrpheusSettings(),
        *,
        encode_audio: AudioEncoder | None = None,
        decode_codes: CodecDecoder | None = None,
        on_step=None,
        decode_thread: DecodeThread | None = None,
    ):
        from transformers import AutoTokenizer

        repository = Path(repository)
        version = repository / T.ORPHEUS / "1"
        self.model = OrpheusMetadata.load(version)
        check_sample_rate(version, self.model.sample_rate, settings.sample_rate, T.ORPHEUS)
        check_speakers(version, self.model.voices, settings.speakers, T.ORPHEUS)
        self.settings = settings
        self.format = self.model.format
        self.tokenizer = AutoTokenizer.from_pretrained(str(version / TOKENIZER_DIR))
        encode_audio = encode_audio or OnnxAudioEncoder(repository / T.SNAC_ENCODER / "1" / T.ONNX_FILE)
        # a clip [S] -> its codes [7, F], once per clip content
        self.references = ClipCache(lambda clip: np.asarray(encode_audio(clip[None])[0], np.int64),
                                    settings.reference_cache)
        if decode_codes is None:
            decode_codes = OnnxCodecDecoder(repository / T.SNAC_DECODER / "1" / T.ONNX_FILE).each
        # the LM is loaded on the thread that will step it (ensemble/engine/decode_thread.py)
        decode_thread, lm = load_on_decode_thread(decode_thread, f"{T.ORPHEUS}-decode", self._language_model, version)
        self.family = OrpheusFamily(lm, self.model, settings.policy)
        self.engine = Engine.for_pipeline(self.family, decode_codes, settings, on_step=on_step,
                                          decode_thread=decode_thread)

    def _language_model(self, version: Path):
        settings = self.settings
        self.lm = resolve_lm(settings.lm_runtime, settings.device, settings.dtype)  # logged at load, exported
        if self.lm.runtime == "torch":
            from tritone.ensemble.orpheus.torch_lm import TorchSpeechLanguageModel  # torch is only needed on this path

            saved = version / CHECKPOINT_DIR
            checkpoint = saved if saved.is_dir() else self.model.checkpoint
            return TorchSpeechLanguageModel(checkpoint, settings.device, self.lm.dtype)
        return OnnxSpeechLanguageModel(version / LM_STEP_FILE)

    def validate(self, raw: dict) -> OrpheusParams:
        """Raises InvalidRequest naming the bad field."""
        return validate(raw, self.model, self.settings.limits)

    def _text_ids(self, field_name: str, text: str) -> list[int]:
        ids = self.tokenizer(text)["input_ids"]
        if len(ids) > self.settings.limits.max_text_tokens:
            raise InvalidRequest(field_name, f"is {len(ids)} tokens long; the limit is "
                                 f"{self.settings.limits.max_text_tokens} (send a sentence at a time)")
        return ids

    def prompt(self, params: OrpheusParams) -> np.ndarray:
        """The request's full prompt token ids; encodes (or finds cached) the reference clip."""
        text = f"{params.voice}: {params.text}" if params.voice else params.text
        codes = params.reference_codes
        if params.reference_audio is not None:
            codes = self.references.get(params.reference_audio)
        reference_ids = None if codes is None else self._text_ids(T.REFERENCE_TEXT, params.reference_text)
        ids = np.array(self.format.prompt_ids(self._text_ids(T.TEXT, text), reference_ids, codes), np.int64)
        return ids

    def frame_limit(self, params: OrpheusParams, prompt_tokens: int) -> int:
        """max_duration in frames, or less where the LM's context ends first (then speech stops there)."""
        fits = (self.model.max_positions - prompt_tokens) // TOKENS_PER_FRAME
        if fits < self.model.frame_rate:
            raise InvalidRequest(T.TEXT, f"the {prompt_tokens}-token prompt (text plus reference clip) leaves less "
                                 f"than 1 s of speech in this model's {self.model.max_positions}-token context")
        return min(params.frame_limit(self.model), fits)

    def submit(self, params: OrpheusParams, stream: Stream) -> None:
        """Raises InvalidRequest (prompt too long) before anything is queued, or AtCapacity."""
        prompt = self.prompt(params)
        self.engine.submit(OrpheusJob(params, prompt, self.frame_limit(params, len(prompt)), stream))
