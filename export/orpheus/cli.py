"""`python -m tritone.export orpheus`: its options and what it runs."""

from __future__ import annotations

import argparse

HELP = "Orpheus-format text to speech: Llama LM step, SNAC encoder and decoder to ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="canopylabs/orpheus-3b-0.1-ft",
                        help="local directory or hub id of an Orpheus checkpoint, 'tiny-random' (toy sizes) or "
                             "'small-random' (SmolLM2-135M's shape, Orpheus' vocabulary, random weights)")
    parser.add_argument("--codec", default=None,
                        help="local directory or hub id of a SNAC codec (default: hubertsiuzdak/snac_24khz; "
                             "the random checkpoints bring a random codec of their size)")
    parser.add_argument("--voices", default=None,
                        help="comma-separated speakers the checkpoint was fine-tuned on (default: "
                             "orpheus-3b-0.1-ft's eight; '' for none)")


def run(args: argparse.Namespace) -> None:
    from tritone.export.orpheus.export import export_orpheus

    voices = None if args.voices is None else tuple(v.strip() for v in args.voices.split(",") if v.strip())
    export_orpheus(args.checkpoint, args.out, codec=args.codec, force=args.force, voices=voices)
