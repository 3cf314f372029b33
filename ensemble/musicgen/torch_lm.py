"""MusicGen's LM on torch, for the GPU target: the very module export traces, run eagerly on a device, with the
batch's KV cache allocated there and updated in place (ensemble/engine/torch_runtime.py says why torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tritone.ensemble.engine.torch_runtime import DTYPES, OnDevice
from tritone.ensemble.musicgen.graphs import CrossKV, LmStep


class TorchLanguageModel(OnDevice):
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
