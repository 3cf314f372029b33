"""The musicgen request and its Triton inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tritonclient.grpc import InferInput

from ensemble import tensors as T


@dataclass(frozen=True)
class MusicRequest:
    """One generation request; None means "server default"."""

    text: str
    duration: float
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    return_codes: bool = False
    # codes [codebooks, frames] of earlier audio to continue from; duration counts new audio only
    prompt_codes: np.ndarray | None = field(default=None, compare=False)


def _input(name: str, datatype: str, value: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    return tensor


def build_inputs(request: MusicRequest) -> list[InferInput]:
    """InferInputs for `request`: TEXT and DURATION always, the others only when set."""
    inputs = [
        _input(T.TEXT, "BYTES", np.array([request.text.encode("utf-8")], dtype=np.object_)),
        _input(T.DURATION, "FP32", np.array([request.duration], dtype=np.float32)),
    ]
    optional = [
        (T.TEMPERATURE, "FP32", np.float32, request.temperature),
        (T.TOP_K, "INT32", np.int32, request.top_k),
        (T.TOP_P, "FP32", np.float32, request.top_p),
        (T.GUIDANCE_SCALE, "FP32", np.float32, request.guidance_scale),
        (T.SEED, "INT64", np.int64, request.seed),
    ]
    for name, datatype, dtype, value in optional:
        if value is not None:
            inputs.append(_input(name, datatype, np.array([value], dtype=dtype)))
    if request.return_codes:
        inputs.append(_input(T.RETURN_CODES, "BOOL", np.array([True], dtype=np.bool_)))
    if request.prompt_codes is not None:
        inputs.append(_input(T.PROMPT_CODES, "INT64", np.ascontiguousarray(request.prompt_codes, dtype=np.int64)))
    return inputs
