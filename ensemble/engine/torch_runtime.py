"""The LMs on torch, for the GPU target: the very modules export traces, run eagerly on a device,
with the batch's KV cache allocated on that device and updated in place between steps.

Why torch rather than a TensorRT engine for the LM: the decode step is one token per row over a
cache whose length changes every step; TensorRT needs an optimization profile over that length
and copies the cache through its bindings, while torch keeps it in place. (CUDA graphs on top
are the next lever; measure them on the GPU before switching them on.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tritone.ensemble.musicgen.graphs import CrossKV, LmStep

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _OnDevice:
    device: torch.device
    dtype: torch.dtype

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, device=self.device, dtype=self.dtype)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True)


class TorchLanguageModel(_OnDevice):
    def __init__(self, checkpoint: str | Path, device: str = "cuda", dtype: str = "float32"):
        from transformers import MusicgenForConditionalGeneration

        self.device, self.dtype = torch.device(device), DTYPES[dtype]
        model = MusicgenForConditionalGeneration.from_pretrained(str(checkpoint), attn_implementation="eager")
        model = model.to(self.device, self.dtype).eval()
        self._cross = CrossKV(model).eval()
        self._step = LmStep(model).eval()

    @torch.inference_mode()
    def cross_kv(self, hidden: np.ndarray):
        return self._cross(self._tensor(hidden).to(self.dtype))

    @torch.inference_mode()
    def step(self, code_ids, positions, past_keys, past_values, cross_keys, cross_values, encoder_mask):
        logits, new_keys, new_values = self._step(
            self._tensor(code_ids), self._tensor(positions), past_keys, past_values, cross_keys, cross_values,
            self._tensor(encoder_mask),
        )
        return logits.float().cpu().numpy(), new_keys, new_values  # sampling runs on the host


class TorchSpeechLanguageModel(_OnDevice):
    """speech_lm_step's module on a device: the speech family's LM for the GPU target."""

    def __init__(self, checkpoint: str | Path, device: str = "cuda", dtype: str = "bfloat16"):
        from transformers import LlamaForCausalLM

        from tritone.ensemble.orpheus.graphs import SpeechLmStep

        self.device, self.dtype = torch.device(device), DTYPES[dtype]
        model = LlamaForCausalLM.from_pretrained(str(checkpoint), attn_implementation="eager")
        self._step = SpeechLmStep(model.to(self.device, self.dtype).eval()).eval()

    @torch.inference_mode()
    def step(self, input_ids, positions, logit_index, past_keys, past_values):
        logits, new_keys, new_values = self._step(
            self._tensor(input_ids), self._tensor(positions), self._tensor(logit_index), past_keys, past_values
        )
        return logits.float().cpu().numpy(), new_keys, new_values
