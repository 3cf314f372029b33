"""The registered families (ensemble/families.py) as the benchmarks see them.

A family's benchmark is its package benchmarks/<name>/ (`Family.benchmark`), imported when asked
for, never by name from shared code:

- `__init__.py`: LABEL, the family's name in results.json (`"family"`) and on the command line
  (`--family music` is `--family musicgen`);
- `suite.py`: `add_arguments(group)` (its own `run` options; returns their argparse actions),
  `Config` (`Config.create(model, smoke, **options)`) and `run(config, repository, grpc_url,
  metrics_url, out_dir, *, stop_server, log)`;
- `report.py`: its section of results.json, results.md, the plots and the README block (SECTION,
  PLOTS, find, evaluate, markdown, plots, readme; see benchmarks/report.py).
"""

from __future__ import annotations

import importlib

from tritone.ensemble.families import FAMILIES


def package(name: str):
    return importlib.import_module(FAMILIES[name].benchmark)


def suite(name: str):
    return importlib.import_module(f"{FAMILIES[name].benchmark}.suite")


def report(name: str):
    return importlib.import_module(f"{FAMILIES[name].benchmark}.report")


def label(name: str) -> str:
    return package(name).LABEL


def choices() -> tuple[str, ...]:
    """What `--family` takes: every family's registry name and its label."""
    return tuple(dict.fromkeys(text for name in FAMILIES for text in (name, label(name))))


def family_named(text: str) -> str:
    """The registry name of the family called `text` (its name or its label)."""
    for name in FAMILIES:
        if text in (name, label(name)):
            return name
    raise ValueError(f"family: no family named {text!r} (registered: {', '.join(choices())})")


def models(name: str) -> tuple[str, ...]:
    """The Triton models the family's benchmark loads: all of its models, the decoupled pipeline
    last (it calls the others)."""
    return tuple(spec.name for spec in FAMILIES[name].models())


def default_family() -> str:
    """The family a benchmark command measures when not told: the first registered (musicgen)."""
    return next(iter(FAMILIES))
