"""What the families' LMs on torch share, for the GPU target: the very modules export traces, run eagerly on a device,
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


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class OnDevice:
    """Tensors for a family's torch LM: on its device and in its dtype."""

    device: torch.device
    dtype: torch.dtype

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, device=self.device, dtype=self.dtype)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True)
