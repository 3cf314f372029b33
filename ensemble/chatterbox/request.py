"""A Chatterbox request: its parameters, defaults, limits and validation.

The defaults are the reference package's (`ChatterboxTTS.generate`): exaggeration 0.5, guidance
(`cfg_weight`) 0.5, temperature 0.8, min-p 0.05, top-p 1, repetition penalty 1.2. A voice is the
checkpoint's built-in one (`voice`, or nothing) or a reference clip to clone (`reference_audio`,
turned into its conditioning once by `chatterbox_voice` and cached by content). Chatterbox needs
no transcript of the clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.chatterbox.metadata import ChatterboxMetadata
from tritone.ensemble.engine.request_fields import InvalidRequest, finite, sampling, utf8_text

MAX_REPETITION_PENALTY = 3.0
MAX_EXAGGERATION = 2.0
MAX_CFG_WEIGHT = 2.0


@dataclass(frozen=True)
class ChatterboxLimits:
    max_text_chars: int = 2000
    max_text_tokens: int = 600  # of T3's text (characters and pairs of them; the gateway sends a sentence at a time)
    max_duration_s: float = 40.0  # the reference's 1000 speech tokens
    min_reference_s: float = 1.0
    max_reference_s: float = 30.0  # the voice reads its first 10 s (the flow) and 6 s (the LM's prompt)


@dataclass(frozen=True)
class ChatterboxParams:
    text: str
    max_duration: float
    voice: str | None = None  # a built-in voice; None with no reference: the checkpoint's first
    reference_audio: np.ndarray | None = field(default=None, compare=False)  # float32 [samples] at 24 kHz
    exaggeration: float = 0.5
    cfg_weight: float = 0.5
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.05
    repetition_penalty: float = 1.2
    seed: int | None = None
    return_codes: bool = False

    def token_limit(self, model: ChatterboxMetadata) -> int:
        return max(1, int(math.floor(self.max_duration * model.token_rate)))


def _bounded(raw: dict, name: str, default: float, low: float, high: float, meaning: str) -> float:
    value = finite(name, raw.get(name, default))
    if not low <= value <= high:
        raise InvalidRequest(name, f"must be in [{low:g}, {high:g}] ({meaning}), got {value:g}")
    return value


def _reference(raw: dict, model: ChatterboxMetadata, limits: ChatterboxLimits) -> np.ndarray | None:
    audio = raw.get(T.REFERENCE_AUDIO)
    if audio is None:
        return None
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.dtype != np.float32:
        raise InvalidRequest(T.REFERENCE_AUDIO, f"must be float32 mono samples [samples], got {audio.dtype} "
                             f"{list(audio.shape)}")
    seconds = audio.size / model.sample_rate
    low, high = limits.min_reference_s, limits.max_reference_s
    if not low <= seconds <= high:
        raise InvalidRequest(T.REFERENCE_AUDIO, f"is {seconds:.2f} s at {model.sample_rate} Hz; a reference "
                             f"clip must last {low:g} to {high:g} s")
    if not np.isfinite(audio).all():
        raise InvalidRequest(T.REFERENCE_AUDIO, "holds NaN or infinite samples")
    return audio


def validate(raw: dict, model: ChatterboxMetadata, limits: ChatterboxLimits = ChatterboxLimits()) -> ChatterboxParams:
    """raw: field name -> value (absent fields take defaults). Raises InvalidRequest naming the field."""
    text = utf8_text(raw, T.TEXT, limits.max_text_chars)
    voice = utf8_text(raw, T.VOICE, 64, required=False)
    audio = _reference(raw, model, limits)
    if voice is not None:
        voice = voice.strip()
        if audio is not None:
            raise InvalidRequest(T.VOICE, f"give either {T.VOICE} or {T.REFERENCE_AUDIO}, not both")
        if voice not in model.voices:
            known = ", ".join(model.voices) or "none (this checkpoint clones voices from reference clips only)"
            raise InvalidRequest(T.VOICE, f"{voice!r} is not a built-in voice of this checkpoint; it has {known}")
    elif audio is None and not model.voices:
        raise InvalidRequest(T.REFERENCE_AUDIO, "is required: this checkpoint has no built-in voice")

    defaults = ChatterboxParams(text="", max_duration=limits.max_duration_s)
    max_duration = finite(T.MAX_DURATION, raw.get(T.MAX_DURATION, limits.max_duration_s))
    if not 0.0 < max_duration <= limits.max_duration_s:
        raise InvalidRequest(T.MAX_DURATION, f"must be in (0, {limits.max_duration_s:g}] seconds, got {max_duration:g}")
    knobs = sampling(raw, defaults.temperature, defaults.top_k, defaults.top_p, model.speech_vocab)
    return ChatterboxParams(
        text=text, max_duration=max_duration, voice=voice, reference_audio=audio,
        exaggeration=_bounded(raw, T.EXAGGERATION, defaults.exaggeration, 0.0, MAX_EXAGGERATION,
                              "emotion exaggeration, 0.5 is neutral"),
        cfg_weight=_bounded(raw, T.CFG_WEIGHT, defaults.cfg_weight, 0.0, MAX_CFG_WEIGHT,
                            "classifier-free guidance, 0 disables it"),
        temperature=knobs.temperature, top_k=knobs.top_k, top_p=knobs.top_p,
        min_p=_bounded(raw, T.MIN_P, defaults.min_p, 0.0, 1.0, "0 disables it"),
        repetition_penalty=_bounded(raw, T.REPETITION_PENALTY, defaults.repetition_penalty, 1.0,
                                    MAX_REPETITION_PENALTY, "1 disables it"),
        seed=knobs.seed, return_codes=bool(raw.get(T.RETURN_CODES, False)),
    )
