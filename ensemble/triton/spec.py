"""Declarative Triton model specs, rendered to config.pbtxt through Triton's own protobuf schema.

One `ModelSpec` describes a model once; `render(spec, target)` gives its config for a target:
`cpu` (python backend running ONNX Runtime, `configs/cpu.pbtxt`, chosen with
`--model-config-name=cpu`) or `gpu` (TensorRT plans / CUDA, the default `config.pbtxt`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

Target = Literal["cpu", "gpu"]
TARGETS: tuple[Target, ...] = ("cpu", "gpu")
CONFIG_PATHS = {"gpu": "config.pbtxt", "cpu": "configs/cpu.pbtxt"}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # BOOL, INT32, INT64, FP32, BYTES...
    dims: tuple[int, ...]  # without the batch dimension; -1 is variable
    optional: bool = False


@dataclass(frozen=True)
class Runtime:
    """How one target runs the model."""

    kind: Literal["KIND_CPU", "KIND_GPU"]
    backend: str | None = "python"
    platform: str | None = None  # e.g. tensorrt_plan (then no backend)
    model_filename: str | None = None
    instances: int = 1
    max_batch_size: int = 0
    max_queue_delay_us: int | None = None  # set: dynamic batching on
    parameters: dict[str, str] = field(default_factory=dict)
    # TensorRT optimization profile: input name -> (min, opt, max) of each non-batch dimension;
    # the batch dimension spans 1..max_batch_size (opt: half of it)
    profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    targets: dict[str, Runtime]
    decoupled: bool = False
    description: str = ""


def _dtype(name: str) -> int:
    # the wire calls it BYTES, the model config TYPE_STRING
    return pb.DataType.Value("TYPE_" + ("STRING" if name == "BYTES" else name))


def to_proto(spec: ModelSpec, target: Target) -> pb.ModelConfig:
    runtime = spec.targets[target]
    config = pb.ModelConfig(name=spec.name, max_batch_size=runtime.max_batch_size)
    if runtime.platform:
        config.platform = runtime.platform
    else:
        config.backend = runtime.backend
    if runtime.model_filename:
        config.default_model_filename = runtime.model_filename
    for tensor in spec.inputs:
        config.input.add(name=tensor.name, data_type=_dtype(tensor.dtype),
                         dims=list(tensor.dims), optional=tensor.optional)
    for tensor in spec.outputs:
        config.output.add(name=tensor.name, data_type=_dtype(tensor.dtype), dims=list(tensor.dims))
    if runtime.max_queue_delay_us is not None:
        config.dynamic_batching.max_queue_delay_microseconds = runtime.max_queue_delay_us
    if spec.decoupled:
        config.model_transaction_policy.decoupled = True
    config.instance_group.add(count=runtime.instances, kind=pb.ModelInstanceGroup.Kind.Value(runtime.kind))
    for key, value in sorted(runtime.parameters.items()):
        config.parameters[key].string_value = value
    return config


def render(spec: ModelSpec, target: Target) -> str:
    header = f"# Rendered from ensemble/ by `python -m tritone.ensemble.triton.render` ({target} target). Do not edit.\n"
    if spec.description:
        header += "".join(f"# {line}\n" for line in spec.description.splitlines())
    return header + text_format.MessageToString(to_proto(spec, target))


def stateless_targets(profiles) -> dict[str, Runtime]:
    """A stateless model: ONNX Runtime in the python backend on CPU, a TensorRT plan on GPU."""
    return {
        "cpu": Runtime("KIND_CPU", max_batch_size=8, max_queue_delay_us=2000),
        "gpu": Runtime("KIND_GPU", backend=None, platform="tensorrt_plan", model_filename="model.plan",
                       max_batch_size=32, max_queue_delay_us=1000, profiles=profiles),
    }
