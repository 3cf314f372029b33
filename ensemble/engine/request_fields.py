"""Request fields every family validates the same way: text, sampling knobs, seed.

Every check names the field it rejects; the Triton glue turns `InvalidRequest` into
INVALID_ARGUMENT and the gateway into an HTTP 4xx naming the parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tritone.ensemble import tensors as T


class InvalidRequest(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def finite(field: str, value) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InvalidRequest(field, f"must be a finite number, got {value}")
    return value


def utf8_text(raw: dict, field: str, max_chars: int, required: bool = True) -> str | None:
    text = raw.get(field)
    if text is None and not required:
        return None
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(field, "must be UTF-8 text") from None
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(field, "must be non-empty text")
    if len(text) > max_chars:
        raise InvalidRequest(field, f"is {len(text)} characters; the limit is {max_chars}")
    return text


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_k: int
    top_p: float
    seed: int | None


MAX_TEMPERATURE = 10.0


def sampling_docs(temperature: float, top_k: int, top_p: float) -> dict[str, str]:
    """What a client reading the model config learns of the sampling inputs (ranges as `sampling` checks them)."""
    return {
        T.TEMPERATURE: f"in [0, {MAX_TEMPERATURE:g}], 0 is greedy; default {temperature:g}",
        T.TOP_K: f"in [0, the codebook size], 0 disables it; default {top_k}",
        T.TOP_P: f"in (0, 1], 1 disables it; default {top_p:g}",
        T.SEED: ">= 0: the same seed and inputs give the same audio; absent: a random seed",
        T.RETURN_CODES: "true: each chunk also carries its codes (output codes); default false",
    }


def sampling(raw: dict, temperature: float, top_k: int, top_p: float, vocab: int) -> Sampling:
    """The sampling fields of `raw`, absent ones taking the given defaults; top_k is bounded by `vocab`."""
    temperature = finite(T.TEMPERATURE, raw.get(T.TEMPERATURE, temperature))
    if not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidRequest(T.TEMPERATURE, f"must be in [0, {MAX_TEMPERATURE:g}] (0 is greedy), got {temperature:g}")
    top_k = int(raw.get(T.TOP_K, min(top_k, vocab)))
    if not 0 <= top_k <= vocab:
        raise InvalidRequest(T.TOP_K, f"must be in [0, {vocab}] (0 disables it), got {top_k}")
    top_p = finite(T.TOP_P, raw.get(T.TOP_P, top_p))
    if not 0.0 < top_p <= 1.0:
        raise InvalidRequest(T.TOP_P, f"must be in (0, 1] (1 disables it), got {top_p:g}")
    seed = raw.get(T.SEED)
    if seed is not None and int(seed) < 0:
        raise InvalidRequest(T.SEED, f"must be >= 0, got {int(seed)}")
    return Sampling(temperature, top_k, top_p, None if seed is None else int(seed))
