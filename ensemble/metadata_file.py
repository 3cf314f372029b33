"""What an export records about its checkpoint, as JSON in the pipeline's version folder: written by the export,
read by the pipeline, the Triton glue and the gateway. Each family's metadata dataclass takes these two methods."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import ClassVar


class MetadataFile:
    """Mixed into a frozen dataclass: `save(directory)` writes it to directory/FILE, `load(directory)` reads it back
    (JSON lists become tuples where the field's default is a tuple; fields missing from an older file keep their
    defaults)."""

    FILE: ClassVar[str] = ""

    def save(self, directory: Path) -> Path:
        path = Path(directory) / self.FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path):
        data = json.loads((Path(directory) / cls.FILE).read_text())
        for f in fields(cls):
            if isinstance(f.default, tuple) and f.name in data:
                data[f.name] = tuple(data[f.name])
        return cls(**data)
