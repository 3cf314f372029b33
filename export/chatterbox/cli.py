"""`python -m tritone.export chatterbox`: its options and what it runs."""

from __future__ import annotations

import argparse

HELP = "Chatterbox text to speech: T3 LM step and conditioning, voice model, flow and HiFT vocoder to ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="ResembleAI/chatterbox",
                        help="local directory or hub id of a Chatterbox checkpoint (ve.safetensors, t3_cfg.safetensors, "
                             "s3gen.safetensors, tokenizer.json, conds.pt), 'tiny-random' (toy sizes) or "
                             "'small-random' (the released architecture, random weights)")


def run(args: argparse.Namespace) -> None:
    from tritone.export.chatterbox.export import export_chatterbox

    export_chatterbox(args.checkpoint, args.out, force=args.force)
