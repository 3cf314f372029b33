"""python -m benchmarks run --model tiny-random|small-random [--smoke] [--out benchmarks/results]
                         [--concurrency 1,2,4,8,16] [--duration 5]
python -m benchmarks readme

`run` exports the model into a work directory if needed, starts a real tritonserver (CPU configs,
explicit model control, every model loaded, free ports), runs the perf_analyzer suite (when
benchmarks.perf_analyzer is there), the streaming load generator, then stops the server and
measures the engine's decode step and transformers' generate() on the same weights. It writes
results.json, results.md and PNG plots under OUT/<model>/. `readme` rewrites README.md's
performance block from the latest results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not levels or any(n < 1 for n in levels):
        raise argparse.ArgumentTypeError(f"concurrency levels must be >= 1, got {text!r}")
    return levels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="measure tritone and the transformers baselines, write results")
    run.add_argument("--model", required=True, choices=("tiny-random", "small-random"))
    run.add_argument("--smoke", action="store_true", help="short requests and few steps: checks the recipes run")
    run.add_argument("--out", type=Path, default=RESULTS, help="results root; files go to OUT/<model>/")
    run.add_argument("--concurrency", type=_levels, help="levels, e.g. 1,2,4,8,16 (the default)")
    run.add_argument("--duration", type=float, help="seconds of audio per request (default 5; smoke 1)")
    run.add_argument("--rounds", type=int, help="level N streams max(N * rounds, min-requests) requests (default 1)")
    run.add_argument("--min-requests", type=int, help="requests per level at least (default 4; smoke 2)")
    run.add_argument("--sequential-requests", type=int,
                     help="transformers one-at-a-time requests measured (default 4; smoke 2)")
    run.add_argument("--static-levels", type=_levels, help="transformers static batch sizes (default: every level)")
    run.add_argument("--step-streams", type=_levels, help="engine step-cost batch sizes (default: every level)")
    run.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: the cores)")
    run.add_argument("--no-perf-analyzer", action="store_true", help="skip the perf_analyzer suite")
    run.add_argument("--work-dir", type=Path, default=ROOT / ".tritone" / "bench",
                     help="where the model repository is exported and the server logs (default .tritone/bench)")

    readme = commands.add_parser("readme", help="rewrite README.md's performance block from the latest results")
    readme.add_argument("--results", type=Path, default=RESULTS)
    readme.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, piped or not

    from benchmarks import report

    if args.command == "readme":
        changed = report.update_readme(args.readme, args.results)
        print(f"{args.readme}: {'performance block rewritten' if changed else 'already up to date'}")
        return 0

    from benchmarks.runner import BenchConfig, prepare_repository, run_suite, triton_server

    config = BenchConfig.create(
        args.model, args.smoke, concurrency=args.concurrency, duration=args.duration, rounds=args.rounds,
        min_requests=args.min_requests, sequential_requests=args.sequential_requests,
        static_levels=args.static_levels, step_streams=args.step_streams, threads=args.threads,
        perf_analyzer=False if args.no_perf_analyzer else None,
    )
    work_dir = args.work_dir / args.model
    out_dir = args.out / args.model
    repository = prepare_repository(args.model, work_dir)
    with triton_server(repository, work_dir / "tritonserver.log") as server:
        run_suite(config, repository, server.grpc_url, server.metrics_url, out_dir, stop_server=server.stop)
    print("update the README's performance section with: python -m benchmarks readme")
    return 0


if __name__ == "__main__":
    sys.exit(main())
