"""What `Family.export` writes for the toy: its pipeline's metadata (there are no weights to export)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.toy_family.spec import PIPELINE_NAME, SAMPLE_RATE

METADATA_FILE = "toy.json"


def export_toy(checkpoint: str, out: Path, force: bool = False) -> dict:
    metadata = {"checkpoint": checkpoint, "sample_rate": SAMPLE_RATE}
    path = Path(out) / PIPELINE_NAME / "1" / METADATA_FILE
    if force or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metadata))
    return metadata
