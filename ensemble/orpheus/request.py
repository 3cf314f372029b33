"""A speech request: its parameters, defaults, limits and validation.

The defaults are those the Orpheus authors ship (temperature 0.6, top-p 0.8, repetition
penalty 1.3: without a penalty the fine-tuned model tends to loop). A voice is either a
speaker the checkpoint was fine-tuned on (`voice`) or a reference clip to clone: its
transcript plus either its codes (a stored voice) or its audio (encoded once, cached).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.orpheus.format import TOKENS_PER_FRAME
from tritone.ensemble.engine.request_fields import InvalidRequest, finite, sampling, utf8_text
from tritone.ensemble.orpheus.metadata import OrpheusMetadata


MAX_REPETITION_PENALTY = 3.0


@dataclass(frozen=True)
class OrpheusLimits:
    max_text_chars: int = 4096
    max_text_tokens: int = 1024
    max_duration_s: float = 60.0  # of speech per request (the gateway sends a sentence at a time)
    min_reference_s: float = 1.0
    max_reference_s: float = 30.0


@dataclass(frozen=True)
class OrpheusParams:
    text: str
    max_duration: float
    voice: str | None = None
    reference_text: str | None = None
    reference_codes: np.ndarray | None = field(default=None, compare=False)  # int64 [7, frames]
    reference_audio: np.ndarray | None = field(default=None, compare=False)  # float32 [samples], to encode
    temperature: float = 0.6
    top_k: int = 0
    top_p: float = 0.8
    repetition_penalty: float = 1.3
    seed: int | None = None
    return_codes: bool = False

    def frame_limit(self, model: OrpheusMetadata) -> int:
        return max(1, int(math.floor(self.max_duration * model.frame_rate)))


def _reference(raw: dict, model: OrpheusMetadata, limits: OrpheusLimits):
    codes, audio = raw.get(T.REFERENCE_CODES), raw.get(T.REFERENCE_AUDIO)
    transcript = utf8_text(raw, T.REFERENCE_TEXT, limits.max_text_chars, required=False)
    if codes is None and audio is None:
        if transcript is not None:
            raise InvalidRequest(T.REFERENCE_TEXT, f"needs the clip it transcribes ({T.REFERENCE_AUDIO} or "
                                 f"{T.REFERENCE_CODES})")
        return None, None, None
    if codes is not None and audio is not None:
        raise InvalidRequest(T.REFERENCE_AUDIO, f"give either {T.REFERENCE_AUDIO} or {T.REFERENCE_CODES}, not both")
    if transcript is None:
        raise InvalidRequest(T.REFERENCE_TEXT, "is required with a reference clip (its transcript)")
    low, high = limits.min_reference_s, limits.max_reference_s
    if codes is not None:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != TOKENS_PER_FRAME or codes.shape[1] < 1:
            raise InvalidRequest(T.REFERENCE_CODES, f"must have shape [{TOKENS_PER_FRAME}, frames >= 1], "
                                 f"got {list(codes.shape)}")
        if codes.min() < 0 or codes.max() >= model.codebook_size:
            raise InvalidRequest(T.REFERENCE_CODES, f"values must be in [0, {model.codebook_size}), "
                                 f"got {codes.min()}..{codes.max()}")
        seconds = codes.shape[1] / model.frame_rate
        if seconds > high + 1 / model.frame_rate:
            raise InvalidRequest(T.REFERENCE_CODES, f"hold {seconds:.1f} s of audio; the limit is {high:g} s")
        return transcript, codes.astype(np.int64), None
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.dtype != np.float32:
        raise InvalidRequest(T.REFERENCE_AUDIO, f"must be float32 mono samples [samples], got {audio.dtype} "
                             f"{list(audio.shape)}")
    seconds = audio.size / model.sample_rate
    if not low <= seconds <= high:
        raise InvalidRequest(T.REFERENCE_AUDIO, f"is {seconds:.2f} s at {model.sample_rate} Hz; a reference "
                             f"clip must last {low:g} to {high:g} s")
    if not np.isfinite(audio).all():
        raise InvalidRequest(T.REFERENCE_AUDIO, "holds NaN or infinite samples")
    return transcript, None, audio


def validate(raw: dict, model: OrpheusMetadata, limits: OrpheusLimits = OrpheusLimits()) -> OrpheusParams:
    """raw: field name -> value (absent fields take defaults). Raises InvalidRequest naming the field."""
    text = utf8_text(raw, T.TEXT, limits.max_text_chars)
    voice = utf8_text(raw, T.VOICE, 64, required=False)
    if voice is not None:
        voice = voice.strip()
        if voice not in model.voices:
            known = ", ".join(model.voices) or "none (this checkpoint clones voices from reference clips only)"
            raise InvalidRequest(T.VOICE, f"{voice!r} is not a speaker of this checkpoint; it knows {known}")
    transcript, codes, audio = _reference(raw, model, limits)

    defaults = OrpheusParams(text="", max_duration=limits.max_duration_s)
    max_duration = finite(T.MAX_DURATION, raw.get(T.MAX_DURATION, limits.max_duration_s))
    if not 0.0 < max_duration <= limits.max_duration_s:
        raise InvalidRequest(T.MAX_DURATION, f"must be in (0, {limits.max_duration_s:g}] seconds, got {max_duration:g}")
    knobs = sampling(raw, defaults.temperature, defaults.top_k, defaults.top_p, model.codebook_size)
    penalty = finite(T.REPETITION_PENALTY, raw.get(T.REPETITION_PENALTY, defaults.repetition_penalty))
    if not 1.0 <= penalty <= MAX_REPETITION_PENALTY:
        raise InvalidRequest(T.REPETITION_PENALTY, f"must be in [1, {MAX_REPETITION_PENALTY:g}] (1 disables it), "
                                                   f"got {penalty:g}")
    return OrpheusParams(
        text=text, max_duration=max_duration, voice=voice, reference_text=transcript, reference_codes=codes,
        reference_audio=audio, temperature=knobs.temperature, top_k=knobs.top_k, top_p=knobs.top_p,
        repetition_penalty=penalty, seed=knobs.seed, return_codes=bool(raw.get(T.RETURN_CODES, False)),
    )
