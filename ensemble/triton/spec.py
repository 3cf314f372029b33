"""Declarative Triton model specs, rendered to config.pbtxt through Triton's own protobuf schema.

One `ModelSpec` describes a model once; `render(spec, target)` gives its config for a target:
`cpu` (python backend running ONNX Runtime, `configs/cpu.pbtxt`, chosen with
`--model-config-name=cpu`) or `gpu` (TensorRT plans / CUDA, the default `config.pbtxt`).
A spec with `steps` is a Triton ensemble (`platform: "ensemble"`): Triton passes tensors from
step to step; see `ensemble_targets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tritone.ensemble import tensors as T
from tritone.ensemble.engine.settings import DOC_PREFIXES

Target = Literal["cpu", "gpu"]
TARGETS: tuple[Target, ...] = ("cpu", "gpu")
CONFIG_PATHS = {"gpu": "config.pbtxt", "cpu": "configs/cpu.pbtxt"}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # BOOL, INT32, INT64, FP32, BYTES...
    dims: tuple[int, ...]  # without the batch dimension; -1 is variable
    optional: bool = False
    doc: str = ""  # what a client must know (unit, layout, range, default): config parameter `input.<name>`
    reshape: tuple[int, ...] | None = None  # the shape the model sees, where it differs from dims ((): one value a row)




def knobs(parameters: dict[str, str]) -> dict[str, str]:
    """A config's parameters without the tensor descriptions."""
    return {key: value for key, value in parameters.items() if not key.startswith(DOC_PREFIXES)}


def stream_outputs(codebooks: int = -1) -> tuple[Tensor, ...]:
    """What a decoupled pipeline sends per chunk (ensemble/triton/glue.py TritonStream): the same for
    every family the engine serves; `codebooks` fixes the codes' first dimension where it is known."""
    return (
        Tensor(T.AUDIO, "FP32", (-1,), doc="mono PCM in [-1, 1] at sample_rate, this chunk's samples"),
        Tensor(T.CHUNK_INDEX, "INT32", (1,), doc="0, 1, 2, ... in order; the last response carries Triton's "
                                                  "final flag"),
        Tensor(T.SAMPLE_RATE, "INT32", (1,), doc="Hz, the same on every chunk (also the parameter sample_rate)"),
        Tensor(T.CODES, "INT64", (codebooks, -1), doc="[codebooks, frames]: the codes this chunk's audio decodes "
                                                      "from; sent only when return_codes is true"),
        Tensor(T.INPUT_TOKENS, "INT32", (1,), doc="on the final chunk: the LM's input (prompt) tokens"),
        Tensor(T.OUTPUT_TOKENS, "INT32", (1,), doc="on the final chunk: the tokens the LM sampled"),
    )


@dataclass(frozen=True)
class Runtime:
    """How one target runs the model."""

    kind: Literal["KIND_CPU", "KIND_GPU"] | None  # None: no instance group (an ensemble)
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
class Step:
    """One model an ensemble runs: which ensemble tensor feeds each of its inputs, which one each output fills."""

    model: str
    inputs: dict[str, str]  # the step model's input name -> the ensemble tensor it reads
    outputs: dict[str, str]  # the step model's output name -> the ensemble tensor it writes

    @classmethod
    def of(cls, spec: "ModelSpec") -> "Step":
        """`spec` as a step whose tensors keep their names in the ensemble."""
        return cls(spec.name, {t.name: t.name for t in spec.inputs}, {t.name: t.name for t in spec.outputs})


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    targets: dict[str, Runtime]
    decoupled: bool = False
    description: str = ""
    steps: tuple[Step, ...] = ()  # set: an ensemble of these models, run in order

    def __post_init__(self):
        if self.steps:
            check_steps(self)


def check_steps(spec: ModelSpec) -> None:
    """Every step reads a tensor the ensemble has by then, and every ensemble output is written."""
    known = {t.name for t in spec.inputs}
    for step in spec.steps:
        missing = sorted(set(step.inputs.values()) - known)
        if missing:
            raise ValueError(f"{spec.name}: step {step.model} reads {missing}, which no input or earlier step gives")
        known |= set(step.outputs.values())
    unwritten = sorted({t.name for t in spec.outputs} - known)
    if unwritten:
        raise ValueError(f"{spec.name}: no step writes the outputs {unwritten}")


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
        added = config.input.add(name=tensor.name, data_type=_dtype(tensor.dtype),
                                 dims=list(tensor.dims), optional=tensor.optional)
        if tensor.reshape is not None:
            added.reshape.shape.extend(tensor.reshape)
    for tensor in spec.outputs:
        added = config.output.add(name=tensor.name, data_type=_dtype(tensor.dtype), dims=list(tensor.dims))
        if tensor.reshape is not None:
            added.reshape.shape.extend(tensor.reshape)
    if runtime.max_queue_delay_us is not None:
        config.dynamic_batching.max_queue_delay_microseconds = runtime.max_queue_delay_us
    if spec.decoupled:
        config.model_transaction_policy.decoupled = True
    if runtime.kind is not None:
        config.instance_group.add(count=runtime.instances, kind=pb.ModelInstanceGroup.Kind.Value(runtime.kind))
    for step in spec.steps:
        config.ensemble_scheduling.step.add(model_name=step.model, model_version=-1,
                                            input_map=step.inputs, output_map=step.outputs)
    docs = {f"{prefix}{tensor.name}": tensor.doc
            for prefix, tensors in zip(DOC_PREFIXES, (spec.inputs, spec.outputs)) for tensor in tensors if tensor.doc}
    for key, value in sorted({**runtime.parameters, **docs}.items()):
        config.parameters[key].string_value = value
    return config


def render(spec: ModelSpec, target: Target) -> str:
    header = f"# Rendered from ensemble/ by `python -m tritone.ensemble.triton.render` ({target} target). Do not edit.\n"
    if spec.description:
        header += "".join(f"# {line}\n" for line in spec.description.splitlines())
    return header + text_format.MessageToString(to_proto(spec, target))


def write_config(repository: Path, spec: ModelSpec, target: Target, parameters: dict[str, str]) -> Path:
    """Write `spec`'s `target` config into `repository` with `parameters` over its own (a test's capacity, a
    benchmark's variant); the committed config comes back with `sync_skeleton`."""
    runtime = spec.targets[target]
    runtime = replace(runtime, parameters={**runtime.parameters, **parameters})
    path = Path(repository) / spec.name / CONFIG_PATHS[target]
    path.write_text(render(replace(spec, targets={**spec.targets, target: runtime}), target))
    return path


def stateless_targets(profiles) -> dict[str, Runtime]:
    """A stateless model: ONNX Runtime in the python backend on CPU, a TensorRT plan on GPU."""
    return {
        "cpu": Runtime("KIND_CPU", max_batch_size=8, max_queue_delay_us=2000),
        "gpu": Runtime("KIND_GPU", backend=None, platform="tensorrt_plan", model_filename="model.plan",
                       max_batch_size=32, max_queue_delay_us=1000, profiles=profiles),
    }


def ensemble_targets(*models: ModelSpec) -> dict[str, Runtime]:
    """An ensemble of `models` on every target: Triton schedules their steps (no instances of its own,
    no batcher: each step model batches), in batches no larger than its smallest step model's."""
    return {target: Runtime(None, backend=None, platform="ensemble",
                            max_batch_size=min(model.targets[target].max_batch_size for model in models))
            for target in TARGETS}
