"""Orpheus' LM on torch, for the GPU target: the very module export traces, run eagerly on a device, with the
batch's KV cache allocated there and updated in place (ensemble/engine/torch_runtime.py says why torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tritone.ensemble.engine.prefix_cache import files_digest
from tritone.ensemble.engine.torch_runtime import DTYPES, OnDevice
from tritone.ensemble.orpheus.graphs import OrpheusLmStep


class TorchSpeechLanguageModel(OnDevice):
    """lm_step's module on a device: the speech family's LM for the GPU target."""

    def __init__(self, checkpoint: str | Path, device: str = "cuda", dtype: str = "bfloat16"):
        from transformers import LlamaForCausalLM

        self.device, self.dtype = torch.device(device), DTYPES[dtype]
        self._checkpoint = checkpoint
        model = LlamaForCausalLM.from_pretrained(str(checkpoint), attn_implementation="eager")
        self._step = OrpheusLmStep(model.to(self.device, self.dtype).eval()).eval()

    def identity(self) -> str:
        """What its keys/values depend on (the prefix cache's key): the checkpoint's files (a hub id as named),
        the device and the dtype."""
        checkpoint = Path(self._checkpoint)
        weights = files_digest([checkpoint]) if checkpoint.is_dir() else str(self._checkpoint)
        return f"torch/{self.device}/{self.dtype}/{weights}"

    @torch.inference_mode()
    def step(self, input_ids, positions, logit_index, past_keys, past_values):
        logits, new_keys, new_values = self._step(
            self._tensor(input_ids), self._tensor(positions), self._tensor(logit_index), past_keys, past_values
        )
        return logits.float().cpu().numpy(), new_keys, new_values
