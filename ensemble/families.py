"""The model families tritone serves: the one list that every stage loops over.

A family is a folder per stage (`ensemble/<name>/`, `export/<name>/`, its `model_repository/`
folders) plus one line here. Nothing outside those folders and this file imports a family's
modules: the entries name them, and they are imported when asked for.

A family defined outside this tree (a plugin, or one a test defines: README's "Adding a model
family") names its package and is added with `registered(family)`, not here.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    name: str  # its decoupled pipeline model in the repository
    exporter: str  # "module:function": (checkpoint, out, force=...) -> the exported checkpoint's metadata
    default_checkpoint: str
    checkpoint_env: str  # the container's environment variable naming the checkpoint to export (docker-compose)
    package: str = ""  # its serving package (spec, pipeline, glue); default tritone.ensemble.<name>

    def __post_init__(self):
        if not self.package:
            object.__setattr__(self, "package", f"tritone.ensemble.{self.name}")

    @property
    def cli(self) -> str:
        """Its `python -m tritone.export <name>` options and runner (add_arguments, run, HELP)."""
        return f"tritone.export.{self.name}.cli"

    @property
    def tensorrt(self) -> str:
        """What its TensorRT plans need (FP32_LAYERS, sample_inputs); imported only for the GPU target.
        Its plans are the models whose GPU target is a `tensorrt_plan` (see `plan_models`)."""
        return f"tritone.export.{self.name}.tensorrt"

    @property
    def benchmark(self) -> str:
        """Its benchmark package, benchmarks/<name>/ (LABEL; `suite`: `python -m tritone.benchmarks run
        --family <name>`; `report`: its section of results.json, results.md and the README)."""
        return f"tritone.benchmarks.{self.name}"

    def models(self) -> tuple:
        """Its Triton models' specs (<package>.spec.MODELS: ensemble/<name>/spec.py), the decoupled pipeline last."""
        return importlib.import_module(f"{self.package}.spec").MODELS

    def plan_models(self) -> tuple:
        """The specs of its models that run as TensorRT plans on the GPU target."""
        return tuple(spec for spec in self.models()
                     if "gpu" in spec.targets and spec.targets["gpu"].platform == "tensorrt_plan")

    def export(self, checkpoint: str, out: Path, force: bool = False):
        module, function = self.exporter.split(":")
        return getattr(importlib.import_module(module), function)(checkpoint, out, force=force)


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("musicgen", "tritone.export.musicgen.export:export_musicgen", "facebook/musicgen-small", "MODEL"),
    Family("orpheus", "tritone.export.orpheus.export:export_orpheus", "canopylabs/orpheus-3b-0.1-ft", "SPEECH_MODEL"),
    Family("chatterbox", "tritone.export.chatterbox.export:export_chatterbox", "ResembleAI/chatterbox",
           "CHATTERBOX_MODEL"),
)}


@contextmanager
def registered(family: Family):
    """`family` is in FAMILIES inside the block (every loop over the registry sees it), then leaves:
    a family defined outside this list (a plugin, or one a test defines). A name already taken is refused."""
    if family.name in FAMILIES:
        raise ValueError(f"a family named {family.name!r} is already registered")
    FAMILIES[family.name] = family
    try:
        yield family
    finally:
        del FAMILIES[family.name]


def all_models() -> tuple:
    """Every family's model specs, in registry order."""
    return tuple(spec for family in FAMILIES.values() for spec in family.models())
