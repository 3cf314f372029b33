"""The transformers reference for speech: LlamaForCausalLM.generate() on the exported weights,
with the Orpheus prompt layout and grammar (ensemble/orpheus_format.py) as `generate` options.

The prompt and the constrained generate() are the speech benchmark's baseline
(benchmarks/orpheus/baseline.py); here with eager attention, the model cached per repository."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from tritone.benchmarks.orpheus.baseline import generate_codes, prompt_ids
from tritone.ensemble import tensors as T
from tritone.ensemble.orpheus.metadata import CHECKPOINT_DIR, OrpheusMetadata


@lru_cache(maxsize=2)
def _load(version: Path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    checkpoint = version / CHECKPOINT_DIR
    model = LlamaForCausalLM.from_pretrained(checkpoint, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(checkpoint), OrpheusMetadata.load(version)


def reference_prompt(repository: Path, text: str, voice: str | None = None, reference_text: str | None = None,
                     reference_codes: np.ndarray | None = None) -> list[int]:
    _, tokenizer, model = _load(Path(repository) / T.ORPHEUS / "1")
    return prompt_ids(tokenizer, model.format, text, voice, reference_text, reference_codes)


def reference_speech(repository: Path, prompt: list[int], frame_limit: int, repetition_penalty: float = 1.0):
    """Greedy generate() -> codes int64 [7, frames] (frames <= frame_limit; fewer if it said end_of_speech)."""
    model, _, meta = _load(Path(repository) / T.ORPHEUS / "1")
    return generate_codes(model, meta.format, [prompt], frame_limit, repetition_penalty)[0]
