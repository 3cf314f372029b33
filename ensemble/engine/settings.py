"""Pipeline settings from a Triton config's `parameters` (all strings), by field name.

A settings dataclass has scalar fields and nested dataclasses (a chunk policy, limits) whose
fields are flattened into the same parameter namespace. Each value is converted to its
default's type; an unknown parameter is an error that lists the known ones.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from typing import ClassVar

from tritone.ensemble.engine.lm_choice import check_knobs


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


def _convert(value: str, like):
    if isinstance(like, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, got {value!r}")
        return value.lower() in ("true", "1")
    return type(like)(value)


DOC_PREFIXES = ("input.", "output.")  # config parameters that describe tensors to clients, not knobs


def from_parameters(cls, parameters: dict[str, str], model: str):
    """`cls` from `parameters` (the tensor descriptions aside); `lm_runtime` and `dtype` must name values they
    can take (ensemble/engine/lm_choice.py)."""
    parameters = {key: value for key, value in parameters.items() if not key.startswith(DOC_PREFIXES)}
    kwargs, known = {}, set()
    for f in fields(cls):
        default = _default(f)
        if is_dataclass(default):
            names = {g.name for g in fields(default)}
            known |= names
            kwargs[f.name] = replace(default, **{name: _convert(parameters[name], getattr(default, name))
                                                 for name in names if name in parameters})
        else:
            known.add(f.name)
            if f.name in parameters:
                kwargs[f.name] = _convert(parameters[f.name], default)
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(f"unknown {model} parameters {unknown}; known: {sorted(known)}")
    check_knobs(kwargs.get("lm_runtime", "auto"), kwargs.get("dtype", "auto"))
    return cls(**kwargs)


@dataclass(frozen=True)
class EngineSettings:
    """Serving knobs every family's pipeline has; its settings dataclass adds its own (sample rate, chunk
    policy, limits, ...). The Triton config's `parameters` set them by field name (`from_parameters`)."""

    model: ClassVar[str] = ""  # the Triton model the settings are for, named in errors
    max_slots: int = 8  # requests decoding at once (a slot holds one request's KV cache)
    max_queue: int = 32  # requests waiting for a slot beyond them
    lm_runtime: str = "onnxruntime"  # or "torch" (the GPU target: KV cache kept on the device), or "auto"
    device: str = "cpu"  # torch device for lm_runtime=torch
    dtype: str = "float32"  # float32, float16, bfloat16 (torch), or "auto" (ensemble/engine/lm_choice.py)

    @classmethod
    def from_parameters(cls, parameters: dict[str, str]):
        return from_parameters(cls, parameters, cls.model)


def check_sample_rate(version, exported: int, declared: int, model: str) -> None:
    """The rate a config declares (clients read it) must be the export's."""
    if exported != declared:
        raise ValueError(f"the export in {version} is {exported} Hz but the {model} config declares "
                         f"sample_rate {declared}")


def check_speakers(version, exported: tuple[str, ...], declared: str, model: str) -> None:
    """The built-in voices a config declares (parameter `speakers`, comma-separated; clients read it) must be the
    export's; "" declares none."""
    names = tuple(name for name in declared.split(",") if name)
    if declared and names != tuple(exported):
        raise ValueError(f"the export in {version} has the speakers {list(exported)} but the {model} config "
                         f"declares speakers {list(names)}")
