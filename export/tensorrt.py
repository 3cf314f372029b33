"""Build TensorRT plans from the exported ONNX graphs (GPU target), and check them against ONNX Runtime.

    python -m tritone.export musicgen --checkpoint facebook/musicgen-small --out model_repository --target tensorrt
    python -m tritone.serving.container --target gpu   # every family's plans, then tritonserver

Written against TensorRT 10's Python API (`pip install .[gpu]`); never imported on CPU installs.
A family's plans are its models whose GPU target is a `tensorrt_plan` (`Family.plan_models`, from
ensemble/families.py). Each plan gets one optimization profile from the model's spec (the batch
range of its GPU target, and the shapes the pipeline sends: prompt buckets up to max_text_tokens,
codec windows from min_window to max_chunk_frames + left_context + lookahead, reference clips up to
30 s), FP16 or BF16 with the layers that overflow in FP16 kept in FP32 (the family's
export/<name>/tensorrt.py FP32_LAYERS: T5's layer norms and feed-forward output, known to exceed
65504; all of SNAC's encoder), and a timing cache shared by every build. A new plan is checked
against ONNX Runtime on the family's `sample_inputs`.
"""

from __future__ import annotations

from tritone.ensemble import tensors as T

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritone.ensemble.families import FAMILIES
from tritone.ensemble.triton.spec import ModelSpec

PLAN_FILE = "model.plan"
TIMING_CACHE = "tensorrt_timing.cache"
PRECISIONS = ("fp32", "fp16", "bf16")


def plan_facts(family: str):
    """The family's export/<name>/tensorrt.py: FP32_LAYERS (model -> ONNX node-name pattern) and
    sample_inputs(spec, codebook_size)."""
    return importlib.import_module(FAMILIES[family].tensorrt)


def family_of(spec: ModelSpec) -> str:
    for name, family in FAMILIES.items():
        if any(model.name == spec.name for model in family.plan_models()):
            return name
    raise ValueError(f"{spec.name} is no registered family's TensorRT plan")


@dataclass(frozen=True)
class Profile:
    """(min, opt, max) full shapes, batch dimension first, for every input of one model."""

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def profile_for(spec: ModelSpec) -> Profile:
    runtime = spec.targets["gpu"]
    top = runtime.max_batch_size
    batch = (1, max(1, top // 2), top)
    return Profile({name: tuple((b, *dims) for b, dims in zip(batch, ranges))
                    for name, ranges in runtime.profiles.items()})


def keep_fp32(spec: ModelSpec, layer_names: list[str]) -> list[str]:
    pattern = plan_facts(family_of(spec)).FP32_LAYERS.get(spec.name)
    return [name for name in layer_names if pattern and pattern.search(name)]


def build_plan(spec: ModelSpec, onnx_path: Path, plan_path: Path, precision: str, timing_cache: Path,
               workspace_gib: float = 4.0) -> Path:
    import tensorrt as trt

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if precision != "fp32":
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        pinned = set(keep_fp32(spec, [layer.name for layer in layers]))
        for layer in layers:
            if layer.name in pinned:
                layer.precision = trt.float32
                for output in range(layer.num_outputs):
                    layer.set_output_type(output, trt.float32)
        print(f"  {spec.name}: {len(pinned)} of {len(layers)} layers kept in FP32")

    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile_for(spec).shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)

    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build {spec.name} (see the log above)")
    plan_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    print(f"  {plan_path}: {plan_path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.0f}s")
    return plan_path


def run_plan(plan_path: Path, inputs: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
    """Run a plan once on the GPU (torch manages the device buffers)."""
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()
    keep = []
    for name, array in inputs.items():
        tensor = torch.from_numpy(np.ascontiguousarray(array)).cuda()
        keep.append(tensor)
        context.set_input_shape(name, tuple(tensor.shape))
        context.set_tensor_address(name, tensor.data_ptr())
    outputs = []
    for name in output_names:
        dtype = {trt.float32: torch.float32, trt.float16: torch.float16}[engine.get_tensor_dtype(name)]
        tensor = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, tensor.data_ptr())
        outputs.append(tensor)
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError(f"TensorRT failed to run {plan_path}")
    stream.synchronize()
    return [tensor.float().cpu().numpy() for tensor in outputs]


def check_plan(spec: ModelSpec, onnx_path: Path, plan_path: Path, inputs: dict[str, np.ndarray],
               tolerance: float) -> float:
    """Max |TensorRT - ONNX Runtime| over the outputs, bounded relative to the output scale."""
    from tritone.ensemble.engine.onnx_runtime import open_session

    names = [tensor.name for tensor in spec.outputs]
    expected = open_session(onnx_path).run(names, inputs)
    got = run_plan(plan_path, inputs, names)
    worst = 0.0
    for name, ours, ref in zip(names, got, expected):
        diff = float(np.max(np.abs(ours - ref)))
        bound = tolerance * max(1.0, float(np.max(np.abs(ref))))
        if not diff <= bound:
            raise RuntimeError(f"{plan_path}: {name} differs from ONNX Runtime by {diff:.3e} (bound {bound:.3e})")
        worst = max(worst, diff)
    print(f"  {plan_path.name}: max |tensorrt - onnxruntime| = {worst:.2e}")
    return worst


def build_engines(repository: Path, family: str, precision: str = "fp16", codebook_size: int = 2048) -> list[Path]:
    """Build (or keep, when newer than their ONNX graph) the plans of `family`'s stateless models;
    `codebook_size` is its export's (the codes the check feeds a codec)."""
    repository = Path(repository)
    timing_cache = repository / TIMING_CACHE
    tolerance = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 5e-2}[precision]
    facts = plan_facts(family)
    plans = []
    for spec in FAMILIES[family].plan_models():
        version = repository / spec.name / "1"
        onnx_path, plan_path = version / T.ONNX_FILE, version / PLAN_FILE
        if plan_path.exists() and plan_path.stat().st_mtime >= onnx_path.stat().st_mtime:
            print(f"  {plan_path} is up to date")
        else:
            build_plan(spec, onnx_path, plan_path, precision, timing_cache)
            check_plan(spec, onnx_path, plan_path, facts.sample_inputs(spec, codebook_size), tolerance)
        plans.append(plan_path)
    return plans
