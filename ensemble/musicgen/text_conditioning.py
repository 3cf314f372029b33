"""Prompt text -> token ids, padded to a few bucket lengths so the text encoder can batch them.

Served as the `musicgen_tokenizer` Triton model, the first step of the `musicgen_text_conditioning`
ensemble (text -> tokenizer -> text encoder), which the pipeline calls with its prompts' text.
`TextConditioning` is the same chain in one process (tests, benchmarks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.metadata import TOKENIZER_DIR
from tritone.ensemble.musicgen.request import InvalidRequest

BUCKETS = (16, 32, 64, 128, 256, 512)


def bucket(length: int, limit: int) -> int:
    """Smallest bucket that holds `length` tokens (the dynamic batcher batches equal shapes)."""
    for size in BUCKETS:
        if length <= size:
            return min(size, limit)
    return limit


class PromptTokenizer:
    def __init__(self, directory: Path, max_tokens: int):
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.max_tokens = max_tokens

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> input_ids, attention_mask: int64 [B, bucket]; too-long prompts are refused, never truncated."""
        encoded = [self._tokenizer(text)["input_ids"] for text in texts]
        for ids in encoded:
            if len(ids) > self.max_tokens:
                raise InvalidRequest(T.TEXT, f"is {len(ids)} tokens long; the limit is {self.max_tokens}")
        width = bucket(max(len(ids) for ids in encoded), self.max_tokens)
        input_ids = np.full((len(encoded), width), self._tokenizer.pad_token_id or 0, np.int64)
        mask = np.zeros((len(encoded), width), np.int64)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return input_ids, mask


def tokenizer_dir(repository: Path) -> Path:
    """Where the export writes the tokenizer: the `musicgen_tokenizer` model's version folder."""
    return Path(repository) / T.MUSICGEN_TOKENIZER / "1" / TOKENIZER_DIR


def prompts_of(texts: np.ndarray) -> list[str]:
    """A BYTES tensor [batch, 1] of UTF-8 prompts -> the prompts."""
    prompts = []
    for value in np.asarray(texts, dtype=object).reshape(-1):
        try:
            prompts.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
        except UnicodeDecodeError:
            raise InvalidRequest(T.TEXT, "must be UTF-8 text") from None
    return prompts


class TextConditioning:
    """Prompts -> (encoder hidden states [B, E, D], attention mask [B, E]): tokenizer, then text encoder."""

    def __init__(self, tokenizer: PromptTokenizer, encode_text: Callable[[np.ndarray, np.ndarray], np.ndarray]):
        self.tokenizer, self.encode_text = tokenizer, encode_text

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        input_ids, mask = self.tokenizer(texts)
        return self.encode_text(input_ids, mask), mask
