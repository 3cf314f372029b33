"""Which runtime and dtype run a pipeline's LM step, from its `lm_runtime`, `device` and `dtype` knobs.

On a CPU, `dtype: auto` is bfloat16 where the CPU has bfloat16 hardware (AVX512-BF16 or AMX,
ensemble/engine/cpu_features.py) and float32 elsewhere. bfloat16 runs on torch: ONNX Runtime's
CPU kernels have no bfloat16 MatMul (a bfloat16 graph fails to load), so `lm_runtime: auto` is
torch for bfloat16 and ONNX Runtime for float32. bfloat16 asked for by name on a CPU without the
hardware runs (torch emulates it) but is logged as slow. On a GPU the dtype is named explicitly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tritone.ensemble.engine.cpu_features import BF16_FLAGS, CpuFeatures

LM_RUNTIMES = ("auto", "onnxruntime", "torch")
DTYPES = ("auto", "float32", "float16", "bfloat16")
CPU_DTYPES = ("auto", "float32", "bfloat16")

log = logging.getLogger("tritone")


@dataclass(frozen=True)
class LmChoice:
    runtime: str  # onnxruntime or torch
    dtype: str  # float32, float16 or bfloat16
    reason: str  # why, for the load log

    def __str__(self) -> str:
        return f"{self.runtime} {self.dtype} ({self.reason})"


def check_knobs(lm_runtime: str, dtype: str) -> None:
    """Settings parsing: each knob names a value it can take (the error names the knob)."""
    if lm_runtime not in LM_RUNTIMES:
        raise ValueError(f"lm_runtime must be one of {LM_RUNTIMES}, got {lm_runtime!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")


def resolve_lm(lm_runtime: str, device: str, dtype: str, cpu: CpuFeatures | None = None) -> LmChoice:
    """The runtime and dtype the LM loads with; `cpu` defaults to this machine's (read only when it matters)."""
    check_knobs(lm_runtime, dtype)
    if device != "cpu":
        if dtype == "auto":
            raise ValueError(f"dtype auto is resolved on device cpu only; name float16 or bfloat16 for {device!r}")
        if lm_runtime == "onnxruntime":
            raise ValueError(f"lm_runtime onnxruntime runs on the CPU; device {device!r} needs lm_runtime torch")
        return LmChoice("torch", dtype, f"on {device}")
    if dtype not in CPU_DTYPES:
        raise ValueError(f"dtype {dtype!r} is not served on device cpu; use one of {CPU_DTYPES}")
    if lm_runtime == "onnxruntime":
        if dtype == "bfloat16":
            raise ValueError("lm_runtime onnxruntime runs float32 only (ONNX Runtime has no bfloat16 CPU MatMul); "
                             "set lm_runtime torch or auto for dtype bfloat16")
        return LmChoice("onnxruntime", "float32", "ONNX Runtime runs float32" if dtype == "auto" else "asked for")
    cpu = cpu or CpuFeatures.detect()
    if dtype == "auto":
        if cpu.fast_bf16:
            dtype, reason = "bfloat16", f"auto: this CPU has {', '.join(cpu.bf16_flags)}"
        else:
            dtype, reason = "float32", f"auto: this CPU has neither {' nor '.join(BF16_FLAGS)}"
    elif dtype == "bfloat16" and not cpu.fast_bf16:
        reason = f"asked for, but this CPU has neither {' nor '.join(BF16_FLAGS)}: emulated, slower than float32"
        log.warning("LM dtype bfloat16 on %s: %s", cpu.model, reason)
    else:
        reason = "asked for"
    runtime = lm_runtime if lm_runtime != "auto" else ("torch" if dtype == "bfloat16" else "onnxruntime")
    return LmChoice(runtime, dtype, reason)
