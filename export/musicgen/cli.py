"""`python -m tritone.export musicgen`: its options and what it runs."""

from __future__ import annotations

import argparse

HELP = "MusicGen: text encoder, LM decoder, EnCodec decoder to ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="facebook/musicgen-small",
                        help="local directory or hub id of a MusicGen checkpoint, 'tiny-random' (toy sizes) "
                             "or 'small-random' (musicgen-small's architecture, random weights)")
    parser.add_argument("--target", choices=("onnx", "tensorrt"), default="onnx",
                        help="tensorrt: also build TensorRT plans for the GPU target (needs a GPU and pip install .[gpu])")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp16",
                        help="TensorRT precision; layers that overflow in FP16 stay FP32")


def run(args: argparse.Namespace) -> None:
    from tritone.export.musicgen.export import export_musicgen

    spec = export_musicgen(args.checkpoint, args.out, force=args.force)
    if args.target == "tensorrt":
        from tritone.export.tensorrt import build_engines

        print(f"building TensorRT plans ({args.precision}) ...")
        build_engines(args.out, "musicgen", args.precision, spec.codebook_size)
