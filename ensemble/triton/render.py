"""Render every model's config.pbtxt (gpu) and configs/cpu.pbtxt (cpu) from the specs.

    python -m tritone.ensemble.triton.render               # write into model_repository/
    python -m tritone.ensemble.triton.render --check       # exit 1 if a committed config is stale
    python -m tritone.ensemble.triton.render --family NAME --repository DIR   # one registered family's models
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tritone.ensemble.families import FAMILIES, all_models
from tritone.ensemble.triton.spec import CONFIG_PATHS, TARGETS, render

DEFAULT_REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


def rendered_files(models=None) -> dict[Path, str]:
    models = all_models() if models is None else models
    return {Path(spec.name) / CONFIG_PATHS[target]: render(spec, target) for spec in models for target in TARGETS}


def write(repository: Path, models=None) -> list[Path]:
    written = []
    for relative, text in rendered_files(models).items():
        path = repository / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def stale(repository: Path, models=None) -> list[Path]:
    return [rel for rel, text in rendered_files(models).items()
            if not (repository / rel).exists() or (repository / rel).read_text() != text]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritone.ensemble.triton.render", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--check", action="store_true", help="only report configs that differ from the specs")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES),
                        help="only this registered family's models (repeatable; default: every family)")
    args = parser.parse_args(argv)
    models = None if not args.family else tuple(spec for name in args.family for spec in FAMILIES[name].models())
    if args.check:
        out_of_date = stale(args.repository, models)
        for path in out_of_date:
            print(f"stale: {path} (run python -m tritone.ensemble.triton.render)")
        return 1 if out_of_date else 0
    for path in write(args.repository, models):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
