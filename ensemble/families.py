"""The model families tritone serves: the one list that every stage loops over.

A family is a folder per stage (`ensemble/<name>/`, `export/<name>/`, its `model_repository/`
folders) plus one line here. Nothing outside those folders and this file imports a family's
modules: the entries name them, and they are imported when asked for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    name: str  # its decoupled pipeline model in the repository
    exporter: str  # "module:function": (checkpoint, out, force=...) -> the exported checkpoint's metadata
    default_checkpoint: str

    @property
    def package(self) -> str:
        return f"tritone.ensemble.{self.name}"

    @property
    def cli(self) -> str:
        """Its `python -m tritone.export <name>` options and runner (add_arguments, run, HELP)."""
        return f"tritone.export.{self.name}.cli"

    def models(self) -> tuple:
        """Its Triton models' specs (ensemble/<name>/spec.py MODELS), pipeline first."""
        return importlib.import_module(f"{self.package}.spec").MODELS

    def export(self, checkpoint: str, out: Path, force: bool = False):
        module, function = self.exporter.split(":")
        return getattr(importlib.import_module(module), function)(checkpoint, out, force=force)


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("musicgen", "tritone.export.musicgen.export:export_musicgen", "facebook/musicgen-small"),
    Family("orpheus", "tritone.export.orpheus.export:export_orpheus", "canopylabs/orpheus-3b-0.1-ft"),
)}


def all_models() -> tuple:
    """Every family's model specs, in registry order."""
    return tuple(spec for family in FAMILIES.values() for spec in family.models())
