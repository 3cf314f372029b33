"""python -m tritone.benchmarks run [--family FAMILY] --model tiny-random|small-random [--smoke]
                         [--out benchmarks/results] [--concurrency 1,2,4,8,16] [--duration 5]
python -m tritone.benchmarks readme
python -m tritone.benchmarks faults [--soak-minutes 10] [--cycles 100]   (benchmarks/faults.py)
python -m tritone.benchmarks bf16 --repository DIR [--family FAMILY] [--streams 1,8,16]   (benchmarks/bf16.py)
python -m tritone.benchmarks decode-thread --repository DIR [--family FAMILY]   (benchmarks/decode_thread.py)
python -m tritone.benchmarks first-chunk --model small-random [--family FAMILY]   (benchmarks/first_chunk.py)

FAMILY is a registered family (ensemble/families.py) or its label: musicgen or music (the
default), orpheus or speech. `run` exports the family's model into a work directory if needed
(every family shares it), starts a real tritonserver (CPU configs, explicit model control, the
family's models loaded, free ports) and runs the family's suite (benchmarks/<family>/suite.py):
the perf_analyzer suite (when benchmarks.perf_analyzer is there), the streaming load generator
(speech: with a built-in and a cloned voice, then the prefill stall), then it stops the server and
measures transformers on the same weights (music: also the engine's decode step). It writes
results.json, results.md and PNG plots under OUT/<model>/, keeping the other families' sections.
`readme` rewrites README.md's performance block from the latest results.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPES = {"faults": "faults", "bf16": "bf16", "decode-thread": "decode_thread", "first-chunk": "first_chunk"}


def _defaults(suites: dict, name: str) -> str:
    """Each family's default for the shared option `name`, e.g. "music 5, speech 3"."""
    def show(value):
        return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else f"{value:g}"

    return "; ".join(f"{label} {show(getattr(suite.Config(model=''), name))}" for label, suite in suites.items())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in RECIPES:  # a recipe of its own, with its own options
        return importlib.import_module(f"tritone.benchmarks.{RECIPES[argv[0]]}").main(argv[1:])
    from tritone.benchmarks import registry
    from tritone.benchmarks.runner import level_list
    from tritone.ensemble.families import FAMILIES

    suites = {registry.label(name): registry.suite(name) for name in FAMILIES}
    parser = argparse.ArgumentParser(prog="python -m tritone.benchmarks", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="measure tritone and the transformers baselines, write results")
    run.add_argument("--family", choices=registry.choices(), default=registry.default_family(),
                     help="a registered family or its label (default: %(default)s)")
    run.add_argument("--model", required=True, choices=("tiny-random", "small-random"))
    run.add_argument("--smoke", action="store_true", help="short requests and few steps: checks the recipes run")
    run.add_argument("--out", type=Path, default=RESULTS, help="results root; files go to OUT/<model>/")
    run.add_argument("--concurrency", type=level_list,
                     help=f"levels, e.g. 1,2,4,8,16 (default: {_defaults(suites, 'concurrency')})")
    run.add_argument("--duration", type=float,
                     help=f"seconds of audio per request (speech: max_duration; default: "
                          f"{_defaults(suites, 'duration')}; smoke 1)")
    run.add_argument("--rounds", type=int, help="level N streams max(N * rounds, min-requests) requests (default 1)")
    run.add_argument("--min-requests", type=int, help="requests per level at least (default 4; smoke 2)")
    run.add_argument("--sequential-requests", type=int,
                     help=f"transformers one-at-a-time requests measured (default: "
                          f"{_defaults(suites, 'sequential_requests')}; smoke 2)")
    run.add_argument("--static-levels", type=level_list, help="transformers static batch sizes (default: every level)")
    run.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: the cores)")
    run.add_argument("--no-perf-analyzer", action="store_true", help="skip the perf_analyzer suite")
    run.add_argument("--perf-analyzer-smoke", action="store_true",
                     help="run the perf_analyzer recipes at their smoke settings (concurrency 1 and 2, short "
                          "windows) in a full run: what fits a CPU's time budget")
    run.add_argument("--work-dir", type=Path, default=ROOT / ".tritone" / "bench",
                     help="where the model repository is exported and the server logs (default .tritone/bench)")
    own = {}  # family name -> its own options' actions
    for name in FAMILIES:
        label = registry.label(name)
        group = run.add_argument_group(f"{label} ({name}) only")
        own[name] = registry.suite(name).add_arguments(group)

    readme = commands.add_parser("readme", help="rewrite README.md's performance block from the latest results")
    readme.add_argument("--results", type=Path, default=RESULTS)
    readme.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, piped or not

    from tritone.benchmarks import report

    if args.command == "readme":
        changed = report.update_readme(args.readme, args.results)
        print(f"{args.readme}: {'performance block rewritten' if changed else 'already up to date'}")
        return 0

    from tritone.benchmarks.runner import prepare_repository, triton_server

    family = registry.family_named(args.family)
    for other, actions in own.items():
        given = [action for action in actions if getattr(args, action.dest) is not None]
        if other != family and given:
            label = registry.label(other)
            parser.error(f"{given[0].option_strings[0]} is a {label} option (--family {label})")
    options = {action.dest: getattr(args, action.dest) for action in own[family]}
    suite = registry.suite(family)
    config = suite.Config.create(
        args.model, args.smoke, concurrency=args.concurrency, duration=args.duration, rounds=args.rounds,
        min_requests=args.min_requests, sequential_requests=args.sequential_requests,
        static_levels=args.static_levels, threads=args.threads, perf_analyzer=False if args.no_perf_analyzer else None,
        perf_analyzer_smoke=args.perf_analyzer_smoke or None, **options)
    work_dir = args.work_dir / args.model
    out_dir = args.out / args.model
    repository = prepare_repository(args.model, work_dir, family=family)
    with triton_server(repository, work_dir / "tritonserver.log", models=registry.models(family)) as server:
        suite.run(config, repository, server.grpc_url, server.metrics_url, out_dir, stop_server=server.stop)
    print("update the README's performance section with: python -m tritone.benchmarks readme")
    return 0


if __name__ == "__main__":
    sys.exit(main())
