"""Export a torch module to ONNX with named tensors and axes, then check it against torch."""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

OPSET = 17


class ParityError(RuntimeError):
    """An exported graph disagrees with the torch module it came from."""


def export_graph(
    module: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    path: Path,
    *,
    tolerance: float = 1e-4,
) -> float:
    """Export `module(**inputs)` to `path`, run it in ONNX Runtime, return the max abs difference.

    The bound is relative to the output scale: max|onnx - torch| <= tolerance * max(1, max|torch|).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()  # export restores the mode it found: a wrapper left in training mode turns dropout on
    started = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python values; the parity check below is the judge
        torch.onnx.export(
            module,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )
        expected = module(**inputs)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    diff = max_difference(path, inputs, output_names, expected, tolerance)
    size_mb = path.stat().st_size / 1e6
    print(f"  {path.name}: {size_mb:.1f} MB in {time.perf_counter() - started:.1f}s, max |onnx - torch| = {diff:.2e}")
    return diff


def max_difference(path, inputs, output_names, expected, tolerance) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(output_names), {name: t.numpy() for name, t in inputs.items()})
    worst = 0.0
    for name, ours, ref in zip(output_names, got, expected):
        ref = ref.numpy()
        if ours.shape != ref.shape:
            raise ParityError(f"{path.name}: output {name} has shape {ours.shape}, torch gives {ref.shape}")
        diff = float(np.max(np.abs(ours - ref))) if ref.size else 0.0
        bound = tolerance * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
        if not diff <= bound:  # also catches NaN
            raise ParityError(f"{path.name}: output {name} differs from torch by {diff:.3e} (bound {bound:.3e})")
        worst = max(worst, diff)
    return worst


def export_lm_graph(module, inputs, output_names, dynamic_axes, path: Path) -> float:
    """export_graph into a scratch directory, then move the graph (and its weights) to `path`.

    Past 2 GB the exporter writes every initializer to its own file beside the graph
    (hundreds for a 3B model); those are gathered into one `<name>.data` file, which ONNX
    Runtime finds next to the graph when it loads it.
    """
    scratch = path.parent / f".{path.name}.export"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        diff = export_graph(module, inputs, output_names, dynamic_axes, scratch / path.name)
        external = path.parent / f"{path.name}.data"
        external.unlink(missing_ok=True)
        if any(p.name != path.name for p in scratch.iterdir()):
            gather_external_data(scratch / path.name, path)
            print(f"  {path.name}: weights in {external.name}, {external.stat().st_size / 1e6:.0f} MB")
        else:
            (scratch / path.name).replace(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return diff


STEP_ROWS, STEP_WIDTH, STEP_PAST = 3, 4, 6  # the traced example of an LM step: three rows, four inputs wide


def export_llm_step(module, first: str, sample: torch.Tensor, cache_shape: tuple[int, int, int], path: Path,
                    gen: torch.Generator) -> float:
    """export_lm_graph for a decoder step with per-row positions and keys/values in and out
    (ensemble/llama_step.py): `first` names its input, `sample` a traced example of it [STEP_ROWS, STEP_WIDTH, ...]
    (token ids or embeddings); `cache_shape` is (layers, KV heads, head dim). The example's rows stand at different
    positions and feed fewer than STEP_WIDTH inputs, so the graph keeps both dynamic."""
    from tritone.ensemble import tensors as T

    layers, kv_heads, head_dim = cache_shape
    cache = (layers, STEP_ROWS, kv_heads, STEP_PAST, head_dim)
    kv_axes = {1: "rows", 3: "past"}
    return export_lm_graph(
        module,
        {first: sample, T.POSITIONS: torch.tensor([6, 2, 0]), T.LOGIT_INDEX: torch.tensor([3, 1, 0]),
         T.PAST_KEYS: torch.randn(cache, generator=gen), T.PAST_VALUES: torch.randn(cache, generator=gen)},
        [T.LOGITS, T.NEW_KEYS, T.NEW_VALUES],
        {first: {0: "rows", 1: "width"}, T.POSITIONS: {0: "rows"}, T.LOGIT_INDEX: {0: "rows"},
         T.PAST_KEYS: kv_axes, T.PAST_VALUES: kv_axes,
         T.LOGITS: {0: "rows"}, T.NEW_KEYS: {1: "rows", 3: "width"}, T.NEW_VALUES: {1: "rows", 3: "width"}},
        path,
    )


def gather_external_data(source: Path, target: Path) -> Path:
    """Re-save an ONNX graph whose tensors sit in external files as `target` + one `target.data`.

    The tensors are copied file to file, never all in memory (13 GB for Orpheus 3B in fp32),
    at 4 KiB-aligned offsets as onnx.save_model lays them out (ONNX Runtime can map them).
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    source, target = Path(source), Path(target)
    model = onnx.load(str(source), load_external_data=False)
    location = f"{target.name}.data"
    tensors = [t for t in _all_tensors(model.graph) if uses_external_data(t)]
    with open(target.parent / location, "wb") as data:
        for tensor in tensors:
            info = ExternalDataInfo(tensor)
            data.write(b"\0" * (-data.tell() % 4096))
            offset = data.tell()
            with open(source.parent / info.location, "rb") as blob:
                blob.seek(info.offset or 0)
                remaining = info.length
                if remaining is None:  # the rest of the file
                    remaining = (source.parent / info.location).stat().st_size - (info.offset or 0)
                while remaining > 0:
                    chunk = blob.read(min(remaining, 64 << 20))
                    if not chunk:
                        raise ValueError(f"{info.location}: external data ends early")
                    data.write(chunk)
                    remaining -= len(chunk)
            del tensor.external_data[:]
            for key, value in (("location", location), ("offset", offset), ("length", data.tell() - offset)):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
    onnx.save_model(model, str(target))
    return target


def _all_tensors(graph):
    """Initializers and tensor attributes, subgraphs included (where external data may sit)."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _all_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_tensors(subgraph)
