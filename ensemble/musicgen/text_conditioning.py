"""Prompt text -> token ids, padded to a few bucket lengths so the text encoder can batch them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T
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
