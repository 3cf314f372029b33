"""python -m tritone.export <family> --checkpoint CHECKPOINT --out model_repository [the family's options]

One subcommand per family in ensemble/families.py; each family's options live in export/<family>/cli.py."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from tritone.ensemble.families import FAMILIES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritone.export", description="Export a model family for Triton.")
    common = argparse.ArgumentParser(add_help=False)  # what every family takes
    common.add_argument("--out", type=Path, default=Path("model_repository"), help="model repository to write into")
    common.add_argument("--force", action="store_true", help="export even if the repository already holds this checkpoint")
    subcommands = parser.add_subparsers(dest="family", required=True)
    clis = {name: importlib.import_module(family.cli) for name, family in FAMILIES.items()}
    for name, cli in clis.items():
        cli.add_arguments(subcommands.add_parser(name, parents=[common], help=cli.HELP))
    args = parser.parse_args(argv)

    from tritone.export.checkpoints import CheckpointUnavailable

    try:
        clis[args.family].run(args)
    except CheckpointUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
