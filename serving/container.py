"""Container entrypoint: prepare the model repository volume, then become tritonserver.

    python -m tritone.serving.container --target gpu   # NVIDIA's Triton image: TensorRT plans, LM on the GPU
    python -m tritone.serving.container --target cpu   # any Docker host: the nvidia-pytriton binary, ONNX Runtime

On first start the volume gets the repository's configs and glue from the image, the export of
every registered family (ensemble/families.py: the checkpoint its `checkpoint_env` names, MODEL
for musicgen, SPEECH_MODEL for orpheus, or `--<family>-checkpoint`) and (GPU) their TensorRT
plans; later starts find them and go straight to serving. Triton runs in explicit model-control
mode with every model loaded, so the gateway can load and unload.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from tritone.ensemble.families import FAMILIES
from tritone.serving.triton import METRICS_CONFIG

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


def prepare(target: str, repository: Path, precision: str, checkpoints: dict[str, str]) -> None:
    """Export every registered family's checkpoint (`checkpoints`, by family name; the family's
    default where missing) into `repository`, then (GPU) build their TensorRT plans."""
    unknown = sorted(set(checkpoints) - set(FAMILIES))
    if unknown:
        raise ValueError(f"checkpoints: no family named {unknown} (registered: {sorted(FAMILIES)})")
    sync_skeleton(repository)
    exported = {name: family.export(checkpoints.get(name, family.default_checkpoint), repository)
                for name, family in FAMILIES.items()}  # skipped when the volume already holds it
    if target == "gpu":
        from tritone.export.tensorrt import build_engines

        for name, family in FAMILIES.items():
            if family.plan_models():  # skipped when up to date
                build_engines(repository, name, precision, exported[name].codebook_size)


DRAIN_S = 15  # a stop (SIGTERM) lets running streams end this long; compose's stop_grace_period is above it
# Triton closes each client's gRPC connection after CONNECTION_AGE_S, the streams on it getting CONNECTION_AGE_GRACE_S
# (beyond a stream's deadline, the gateway's TRITONE_STREAM_TIMEOUT_S, 600 s). A gateway then connects again, and gRPC
# resolves a headless Service's name again (its DNS resolver looks only when a connection closes), so Triton pods
# the autoscaler adds get streams within about a minute.
CONNECTION_AGE_S = 60
CONNECTION_AGE_GRACE_S = 660


def server_command(target: str, repository: Path) -> list[str]:
    common = ["--model-control-mode=explicit", "--load-model=*", METRICS_CONFIG]
    if target == "gpu":
        return [CONTAINER_TRITONSERVER, f"--model-repository={repository}", *common, f"--exit-timeout-secs={DRAIN_S}",
                f"--grpc-max-connection-age={CONNECTION_AGE_S * 1000}",
                f"--grpc-max-connection-age-grace={CONNECTION_AGE_GRACE_S * 1000}"]
    return [sys.executable, "-m", "tritone.serving", "--model-repository", str(repository), "--host", "0.0.0.0",
            "--grpc-max-connection-age", str(CONNECTION_AGE_S), "--grpc-max-connection-age-grace",
            str(CONNECTION_AGE_GRACE_S), "--model-config-name", "cpu", "--model-control-mode", "explicit",
            "--load-model", "*", "--drain-timeout", str(DRAIN_S)]


def parse_args(argv=None) -> argparse.Namespace:
    """The options; `checkpoints` holds each registered family's checkpoint, by family name."""
    parser = argparse.ArgumentParser(prog="python -m tritone.serving.container", description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("gpu", "cpu"), required=True)
    parser.add_argument("--repository", type=Path, default=Path(os.environ.get("MODEL_REPOSITORY", "/models")))
    for name, family in FAMILIES.items():
        parser.add_argument(f"--{name}-checkpoint", dest=f"checkpoint_{name}",
                            default=os.environ.get(family.checkpoint_env, family.default_checkpoint),
                            help=f"{name}'s checkpoint to export (default: ${family.checkpoint_env}, else "
                                 f"{family.default_checkpoint})")
    parser.add_argument("--precision", default=os.environ.get("TRT_PRECISION", "fp16"))
    parser.add_argument("--prepare-only", action="store_true",
                        help="prepare the model repository and exit (a Kubernetes init container), not serve")
    args = parser.parse_args(argv)
    args.checkpoints = {name: getattr(args, f"checkpoint_{name}") for name in FAMILIES}
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    prepare(args.target, args.repository, args.precision, args.checkpoints)
    if args.prepare_only:
        print(f"model repository ready in {args.repository}", flush=True)
        return
    command = server_command(args.target, args.repository)
    print("starting:", " ".join(command), flush=True)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
