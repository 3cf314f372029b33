"""The transformers reference for speech: LlamaForCausalLM.generate() on the exported weights,
with the Orpheus prompt layout and grammar (ensemble/orpheus_format.py) as `generate` options."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ensemble import tensors as T
from ensemble.orpheus_format import TOKENS_PER_FRAME
from ensemble.speech_model import CHECKPOINT_DIR, SpeechModel


@lru_cache(maxsize=2)
def _load(version: Path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    checkpoint = version / CHECKPOINT_DIR
    model = LlamaForCausalLM.from_pretrained(checkpoint, attn_implementation="eager").eval()
    return model, AutoTokenizer.from_pretrained(checkpoint), SpeechModel.load(version)


def reference_prompt(repository: Path, text: str, voice: str | None = None, reference_text: str | None = None,
                     reference_codes: np.ndarray | None = None) -> list[int]:
    _, tokenizer, model = _load(Path(repository) / T.SPEECH / "1")
    text = f"{voice}: {text}" if voice else text
    transcript = None if reference_text is None else tokenizer(reference_text)["input_ids"]
    return model.format.prompt_ids(tokenizer(text)["input_ids"], transcript, reference_codes)


def reference_speech(repository: Path, prompt: list[int], max_frames: int, repetition_penalty: float = 1.0):
    """Greedy generate() -> codes int64 [7, frames] (frames <= max_frames; fewer if it said end_of_speech)."""
    import torch

    model, _, meta = _load(Path(repository) / T.SPEECH / "1")
    fmt = meta.format

    def allowed(batch_id, input_ids):
        return fmt.allowed(len(input_ids) - len(prompt)).tolist()

    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False, max_new_tokens=TOKENS_PER_FRAME * max_frames, eos_token_id=fmt.end_of_speech,
            pad_token_id=fmt.pad_token_id, repetition_penalty=repetition_penalty, prefix_allowed_tokens_fn=allowed,
        )
    answer = out[0, len(prompt):].numpy()
    if answer.size and answer[-1] == fmt.end_of_speech:
        answer = answer[:-1]
    return fmt.tokens_to_codes(answer)
