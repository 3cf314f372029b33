"""The transformers reference: MusicgenForConditionalGeneration.generate() on the exported weights."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from tritone.ensemble import tensors as T
from tritone.ensemble.musicgen.metadata import CHECKPOINT_DIR


@lru_cache(maxsize=2)
def load(checkpoint: Path):
    from transformers import AutoTokenizer, MusicgenForConditionalGeneration

    return MusicgenForConditionalGeneration.from_pretrained(checkpoint).eval(), AutoTokenizer.from_pretrained(checkpoint)


def reference_generate(repository: Path, text: str, frames: int, guidance_scale: float = 3.0):
    """Greedy generate() -> (codes int64 [K, frames], audio float32 [frames * hop])."""
    import torch

    model, tokenizer = load(Path(repository) / T.MUSICGEN / "1" / CHECKPOINT_DIR)
    captured = {}
    decode = model.audio_encoder.decode

    def capture(audio_codes, *args, **kwargs):  # generate() hands the final codes to the codec
        captured["codes"] = audio_codes
        return decode(audio_codes, *args, **kwargs)

    model.audio_encoder.decode = capture
    try:
        with torch.no_grad():
            inputs = tokenizer(text, return_tensors="pt")
            audio = model.generate(
                **inputs,
                do_sample=False,
                guidance_scale=guidance_scale,
                max_new_tokens=frames + model.decoder.num_codebooks - 1,
            )
    finally:
        model.audio_encoder.decode = decode
    return captured["codes"][0, 0].numpy(), audio[0, 0].numpy()
