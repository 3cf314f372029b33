"""python -m tritone.export musicgen --checkpoint CHECKPOINT --out model_repository
python -m tritone.export orpheus --checkpoint CHECKPOINT [--codec CODEC] --out model_repository"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritone.export", description="Export a model family for Triton.")
    common = argparse.ArgumentParser(add_help=False)  # what every family takes
    common.add_argument("--out", type=Path, default=Path("model_repository"), help="model repository to write into")
    common.add_argument("--force", action="store_true", help="export even if the repository already holds this checkpoint")
    families = parser.add_subparsers(dest="family", required=True)
    music = families.add_parser("musicgen", parents=[common],
                                help="MusicGen: text encoder, LM decoder, EnCodec decoder to ONNX")
    music.add_argument("--checkpoint", default="facebook/musicgen-small",
                       help="local directory or hub id of a MusicGen checkpoint, 'tiny-random' (toy sizes) "
                            "or 'small-random' (musicgen-small's architecture, random weights)")
    music.add_argument("--target", choices=("onnx", "tensorrt"), default="onnx",
                       help="tensorrt: also build TensorRT plans for the GPU target (needs a GPU and pip install .[gpu])")
    music.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp16",
                       help="TensorRT precision; layers that overflow in FP16 stay FP32")
    speech = families.add_parser("orpheus", parents=[common],
                                 help="Orpheus-format text to speech: Llama LM step, SNAC encoder and decoder to ONNX")
    speech.add_argument("--checkpoint", default="canopylabs/orpheus-3b-0.1-ft",
                        help="local directory or hub id of an Orpheus checkpoint, 'tiny-random' (toy sizes) or "
                             "'small-random' (SmolLM2-135M's shape, Orpheus' vocabulary, random weights)")
    speech.add_argument("--codec", default=None,
                        help="local directory or hub id of a SNAC codec (default: hubertsiuzdak/snac_24khz; "
                             "the random checkpoints bring a random codec of their size)")
    speech.add_argument("--voices", default=None,
                        help="comma-separated speakers the checkpoint was fine-tuned on (default: "
                             "orpheus-3b-0.1-ft's eight; '' for none)")
    args = parser.parse_args(argv)

    from tritone.export.checkpoints import CheckpointUnavailable

    try:
        if args.family == "orpheus":
            from tritone.export.orpheus.export import export_orpheus

            voices = None if args.voices is None else tuple(v.strip() for v in args.voices.split(",") if v.strip())
            export_orpheus(args.checkpoint, args.out, codec=args.codec, force=args.force, voices=voices)
        else:
            from tritone.export.musicgen.export import export_musicgen

            spec = export_musicgen(args.checkpoint, args.out, force=args.force)
            if args.target == "tensorrt":
                from tritone.export.tensorrt import build_engines

                print(f"building TensorRT plans ({args.precision}) ...")
                build_engines(args.out, args.precision, spec.codebook_size)
    except CheckpointUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
