"""The musicgen request and its Triton inputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tritonclient.grpc import InferInput

from tritone.ensemble import tensors as T


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


def tensor_input(name: str, datatype: str, value: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    return tensor


def text_input(name: str, text: str) -> InferInput:
    return tensor_input(name, "BYTES", np.array([text.encode("utf-8")], dtype=np.object_))


def optional_scalars(scalars) -> list[InferInput]:
    """[1]-shaped inputs for the (name, datatype, numpy dtype, value) whose value is not None."""
    return [tensor_input(name, datatype, np.array([value], dtype=dtype))
            for name, datatype, dtype, value in scalars if value is not None]


def sampling_inputs(request, *family) -> list[InferInput]:
    """The sampling inputs both pipelines take, those that are set: temperature, top_k, top_p, the
    family's own (name, datatype, numpy dtype, value) rows, seed and return_codes."""
    return optional_scalars([
        (T.TEMPERATURE, "FP32", np.float32, request.temperature),
        (T.TOP_K, "INT32", np.int32, request.top_k),
        (T.TOP_P, "FP32", np.float32, request.top_p),
        *family,
        (T.SEED, "INT64", np.int64, request.seed),
        (T.RETURN_CODES, "BOOL", np.bool_, True if request.return_codes else None),
    ])


def build_inputs(request: MusicRequest) -> list[InferInput]:
    """InferInputs for `request`: TEXT and DURATION always, the others only when set."""
    inputs = [
        text_input(T.TEXT, request.text),
        tensor_input(T.DURATION, "FP32", np.array([request.duration], dtype=np.float32)),
        *sampling_inputs(request, (T.GUIDANCE_SCALE, "FP32", np.float32, request.guidance_scale)),
    ]
    if request.prompt_codes is not None:
        inputs.append(tensor_input(T.PROMPT_CODES, "INT64", np.ascontiguousarray(request.prompt_codes, dtype=np.int64)))
    return inputs
