"""Export a torch module to ONNX with named tensors and axes, then check it against torch."""

from __future__ import annotations

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
