"""Container entrypoint: prepare the model repository volume, then become tritonserver.

    python -m tritone.serving.container --target gpu   # NVIDIA's Triton image: TensorRT plans, LM on the GPU
    python -m tritone.serving.container --target cpu   # any Docker host: the nvidia-pytriton binary, ONNX Runtime

On first start the volume gets the repository's configs and glue from the image, the export of
MODEL and (GPU) its TensorRT plans; later starts find them and go straight to serving. Triton
runs in explicit model-control mode with every model loaded, so the gateway can load and unload.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

IMAGE_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"
CONTAINER_TRITONSERVER = "/opt/tritonserver/bin/tritonserver"


def is_source(relative: Path) -> bool:
    """Configs and glue (`*.pbtxt`, `1/model.py`), not what export writes next to them."""
    return relative.suffix == ".pbtxt" or (relative.name == "model.py" and relative.parent.name == "1")


def sync_skeleton(repository: Path, source: Path = IMAGE_REPOSITORY) -> None:
    """Copy the repository's configs and model.py into `repository` (always the source's: they are
    code) and leave the build outputs already there alone."""
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if path.is_file() and is_source(relative):
            target = repository / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def prepare(target: str, repository: Path, checkpoint: str, precision: str, speech_checkpoint: str) -> None:
    from tritone.ensemble.families import FAMILIES

    sync_skeleton(repository)
    checkpoints = {"musicgen": checkpoint, "orpheus": speech_checkpoint}
    exported = {name: family.export(checkpoints[name], repository)  # skipped when the volume already holds it
                for name, family in FAMILIES.items()}
    music, speech = exported["musicgen"], exported["orpheus"]
    if target == "gpu":
        from tritone.export.tensorrt import MUSIC, SPEECH, build_engines

        build_engines(repository, precision, music.codebook_size, MUSIC)  # skipped when up to date
        build_engines(repository, precision, speech.codebook_size, SPEECH)


DRAIN_S = 15  # a stop (SIGTERM) lets running streams end this long; compose's stop_grace_period is above it


def server_command(target: str, repository: Path) -> list[str]:
    common = ["--model-control-mode=explicit", "--load-model=*"]
    if target == "gpu":
        return [CONTAINER_TRITONSERVER, f"--model-repository={repository}", *common, f"--exit-timeout-secs={DRAIN_S}"]
    return [sys.executable, "-m", "tritone.serving", "--model-repository", str(repository), "--host", "0.0.0.0",
            "--model-config-name", "cpu", "--model-control-mode", "explicit", "--load-model", "*",
            "--drain-timeout", str(DRAIN_S)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tritone.serving.container", description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("gpu", "cpu"), required=True)
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", "/models")))
    parser.add_argument("--checkpoint", default=os.environ.get("MODEL", "facebook/musicgen-small"))
    parser.add_argument("--speech-checkpoint", default=os.environ.get("SPEECH_MODEL", "canopylabs/orpheus-3b-0.1-ft"))
    parser.add_argument("--precision", default=os.environ.get("TRT_PRECISION", "fp16"))
    args = parser.parse_args(argv)
    prepare(args.target, args.repository, args.checkpoint, args.precision, args.speech_checkpoint)
    command = server_command(args.target, args.repository)
    print("starting:", " ".join(command), flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
