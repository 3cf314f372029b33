"""Chatterbox's LM step (T3) on torch, for the GPU target: the very module export traces, run eagerly on a device,
with the batch's KV cache allocated there and updated in place (ensemble/engine/torch_runtime.py says why torch).

It is built from T3's checkpoint file (t3_cfg.safetensors: the backbone `tfmr.*` and `speech_head.*`) and the
backbone's config that export writes beside the graphs (LLAMA_CONFIG_FILE), without the chatterbox package.
The conditioning graph and the tables stay on ONNX Runtime / numpy (once per voice, a gather per token).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tritone.ensemble.chatterbox.graphs_lm import T3LmStep
from tritone.ensemble.engine.prefix_cache import files_digest
from tritone.ensemble.engine.torch_runtime import DTYPES, OnDevice

T3_WEIGHTS_FILE = "t3_cfg.safetensors"


def load_step(checkpoint: Path, llama_config: Path) -> T3LmStep:
    """T3LmStep on the CPU in float32 from the checkpoint (file, or the folder holding t3_cfg.safetensors)."""
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaModel

    checkpoint = Path(checkpoint)
    weights = load_file(str(checkpoint / T3_WEIGHTS_FILE if checkpoint.is_dir() else checkpoint))
    config = LlamaConfig.from_dict(json.loads(Path(llama_config).read_text()))
    tfmr = LlamaModel(config)
    tfmr.load_state_dict({k[len("tfmr."):]: v for k, v in weights.items() if k.startswith("tfmr.")})
    head = weights["speech_head.weight"]
    speech_head = torch.nn.Linear(head.shape[1], head.shape[0], bias="speech_head.bias" in weights)
    speech_head.load_state_dict({k[len("speech_head."):]: v for k, v in weights.items() if k.startswith("speech_head.")})
    return T3LmStep(tfmr.float().eval(), config, speech_head.float().eval()).eval()


class TorchT3LanguageModel(OnDevice):
    """lm_step's module on a device: the Chatterbox family's LM step for the GPU target."""

    def __init__(self, checkpoint: str | Path, llama_config: str | Path, device: str = "cuda", dtype: str = "bfloat16"):
        self.device, self.dtype = torch.device(device), DTYPES[dtype]
        checkpoint = Path(checkpoint)
        weights = checkpoint / T3_WEIGHTS_FILE if checkpoint.is_dir() else checkpoint
        self._files = [weights, Path(llama_config)]
        self._step = load_step(weights, Path(llama_config)).to(self.device, self.dtype)

    def identity(self) -> str:
        """What its keys/values depend on (the prefix cache's key): T3's weights and backbone config, device, dtype."""
        return f"torch/{self.device}/{self.dtype}/{files_digest(self._files)}"

    @torch.inference_mode()
    def step(self, inputs_embeds, positions, logit_index, past_keys, past_values):
        embeds = self._tensor(np.asarray(inputs_embeds, np.float32)).to(self.dtype)
        logits, new_keys, new_values = self._step(
            embeds, self._tensor(positions), self._tensor(logit_index), past_keys, past_values
        )
        return logits.float().cpu().numpy(), new_keys, new_values
