"""A MusicGen generation request: its parameters, their defaults and limits, and validation.

Every check names the field it rejects; the Triton glue turns `InvalidRequest` into
INVALID_ARGUMENT and the gateway into HTTP 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.request_fields import InvalidRequest, finite, sampling, utf8_text

__all__ = ["InvalidRequest", "Limits", "GenerationParams", "validate"]


MAX_GUIDANCE_SCALE = 20.0


@dataclass(frozen=True)
class Limits:
    # EnCodec's first convolution (kernel 7, reflect padding) needs 4 frames; 0.1 s is 5
    min_duration_s: float = 0.1
    max_duration_s: float = 30.0
    max_text_chars: int = 2000
    max_text_tokens: int = 256


@dataclass(frozen=True)
class GenerationParams:
    text: str
    duration: float
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 1.0
    guidance_scale: float = 3.0
    seed: int | None = None
    return_codes: bool = False
    prompt_codes: np.ndarray | None = field(default=None, compare=False)  # int64 [K, P]: continue from these

    @property
    def prompt_frames(self) -> int:
        return 0 if self.prompt_codes is None else self.prompt_codes.shape[1]

    @property
    def rows(self) -> int:
        """Decoder rows: the conditional one, plus the unconditional one under guidance."""
        return 2 if self.guidance_scale > 1.0 else 1


def _prompt_codes(raw, codebooks: int, codebook_size: int, frame_rate: int, duration: float, limits: Limits):
    codes = raw.get(T.PROMPT_CODES)
    if codes is None:
        return None
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != codebooks or codes.shape[1] < 1:
        raise InvalidRequest(T.PROMPT_CODES, f"must have shape [{codebooks}, frames >= 1], got {list(codes.shape)}")
    if codes.min() < 0 or codes.max() >= codebook_size:
        raise InvalidRequest(T.PROMPT_CODES, f"values must be in [0, {codebook_size}), got {codes.min()}..{codes.max()}")
    total = codes.shape[1] / frame_rate + duration
    if total > limits.max_duration_s + 1e-6:
        raise InvalidRequest(
            T.PROMPT_CODES, f"{codes.shape[1] / frame_rate:g} s of prompt plus {duration:g} s of new audio is "
            f"{total:g} s; the limit is {limits.max_duration_s:g} s")
    return codes.astype(np.int64)


def validate(raw: dict, limits: Limits, codebook_size: int, codebooks: int = 4, frame_rate: int = 50) -> GenerationParams:
    """raw: field name -> value (absent fields take defaults)."""
    text = utf8_text(raw, T.TEXT, limits.max_text_chars)

    if raw.get(T.DURATION) is None:
        raise InvalidRequest(T.DURATION, "is required (seconds of audio)")
    duration = finite(T.DURATION, raw[T.DURATION])
    if not limits.min_duration_s <= duration <= limits.max_duration_s:
        raise InvalidRequest(
            T.DURATION, f"must be in [{limits.min_duration_s:g}, {limits.max_duration_s:g}] seconds, got {duration:g}")

    defaults = GenerationParams(text="", duration=0.0)
    knobs = sampling(raw, defaults.temperature, defaults.top_k, defaults.top_p, codebook_size)
    guidance = finite(T.GUIDANCE_SCALE, raw.get(T.GUIDANCE_SCALE, defaults.guidance_scale))
    if not 1.0 <= guidance <= MAX_GUIDANCE_SCALE:
        raise InvalidRequest(T.GUIDANCE_SCALE, f"must be in [1, {MAX_GUIDANCE_SCALE:g}] (1 disables guidance), "
                                               f"got {guidance:g}")
    return GenerationParams(
        text=text,
        duration=duration,
        temperature=knobs.temperature,
        top_k=knobs.top_k,
        top_p=knobs.top_p,
        guidance_scale=guidance,
        seed=knobs.seed,
        return_codes=bool(raw.get(T.RETURN_CODES, False)),
        prompt_codes=_prompt_codes(raw, codebooks, codebook_size, frame_rate, duration, limits),
    )
