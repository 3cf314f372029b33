"""python -m tritone.benchmarks run [--family music|speech] --model tiny-random|small-random [--smoke]
                         [--out benchmarks/results] [--concurrency 1,2,4,8,16] [--duration 5]
python -m tritone.benchmarks readme
python -m tritone.benchmarks faults [--soak-minutes 10] [--cycles 100]   (benchmarks/faults.py)

`run` exports the family's model into a work directory if needed (both families share it),
starts a real tritonserver (CPU configs, explicit model control, the family's models loaded, free
ports), runs the perf_analyzer suite (when benchmarks.perf_analyzer is there), the streaming load
generator (speech: with a built-in and a cloned voice, then the prefill stall), then stops the
server and measures transformers on the same weights (music: also the engine's decode step). It
writes results.json, results.md and PNG plots under OUT/<model>/, keeping the other family's
section. `readme` rewrites README.md's performance block from the latest results.
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


def _voices(text: str) -> tuple[str, ...]:
    voices = tuple(part.strip() for part in text.split(",") if part.strip())
    if not voices or any(v not in ("builtin", "cloned") for v in voices):
        raise argparse.ArgumentTypeError(f"expected builtin, cloned or both, got {text!r}")
    return voices


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["faults"]:
        from tritone.benchmarks.faults import main as faults

        return faults(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m tritone.benchmarks", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="measure tritone and the transformers baselines, write results")
    run.add_argument("--family", choices=("music", "speech"), default="music",
                     help="music (musicgen, the default) or speech (orpheus)")
    run.add_argument("--model", required=True, choices=("tiny-random", "small-random"))
    run.add_argument("--smoke", action="store_true", help="short requests and few steps: checks the recipes run")
    run.add_argument("--out", type=Path, default=RESULTS, help="results root; files go to OUT/<model>/")
    run.add_argument("--concurrency", type=_levels, help="levels, e.g. 1,2,4,8,16 (the default; speech 1,2,4,8)")
    run.add_argument("--duration", type=float,
                     help="seconds of audio per request (default 5; speech: max_duration, default 3; smoke 1)")
    run.add_argument("--rounds", type=int, help="level N streams max(N * rounds, min-requests) requests (default 1)")
    run.add_argument("--min-requests", type=int, help="requests per level at least (default 4; smoke 2)")
    run.add_argument("--sequential-requests", type=int,
                     help="transformers one-at-a-time requests measured (default 4, speech 3; smoke 2)")
    run.add_argument("--static-levels", type=_levels, help="transformers static batch sizes (default: every level)")
    run.add_argument("--step-streams", type=_levels, help="music: engine step-cost batch sizes (default: every level)")
    run.add_argument("--voices", type=_voices, help="speech: builtin,cloned (the default) or one of them")
    run.add_argument("--clone-levels", type=_levels, help="speech: the cloned voice's levels (default: every level)")
    run.add_argument("--stall-streams", type=int,
                     help="speech: running streams while a 30 s voice prompt is prefilled (default 2; 0 skips it)")
    run.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: the cores)")
    run.add_argument("--no-perf-analyzer", action="store_true", help="skip the perf_analyzer suite")
    run.add_argument("--perf-analyzer-smoke", action="store_true",
                     help="run the perf_analyzer recipes at their smoke settings (concurrency 1 and 2, short "
                          "windows) in a full run: what fits a CPU's time budget")
    run.add_argument("--work-dir", type=Path, default=ROOT / ".tritone" / "bench",
                     help="where the model repository is exported and the server logs (default .tritone/bench)")

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

    from tritone.benchmarks.runner import FAMILY_MODELS, BenchConfig, prepare_repository, run_suite, triton_server

    common = dict(concurrency=args.concurrency, duration=args.duration, rounds=args.rounds,
                  min_requests=args.min_requests, sequential_requests=args.sequential_requests,
                  static_levels=args.static_levels, threads=args.threads,
                  perf_analyzer=False if args.no_perf_analyzer else None,
                  perf_analyzer_smoke=args.perf_analyzer_smoke or None)
    if args.family == "speech":
        if args.step_streams is not None:
            parser.error("--step-streams is a music option")
        from tritone.benchmarks.speech import SpeechBenchConfig, run_speech_suite

        config = SpeechBenchConfig.create(args.model, args.smoke, voices=args.voices, clone_levels=args.clone_levels,
                                          stall_streams=args.stall_streams, **common)
        suite = run_speech_suite
    else:
        speech_only = [name for name in ("voices", "clone_levels", "stall_streams") if getattr(args, name) is not None]
        if speech_only:
            parser.error(f"--{speech_only[0].replace('_', '-')} is a speech option (--family speech)")
        config = BenchConfig.create(args.model, args.smoke, step_streams=args.step_streams, **common)
        suite = run_suite
    work_dir = args.work_dir / args.model
    out_dir = args.out / args.model
    repository = prepare_repository(args.model, work_dir, family=args.family)
    with triton_server(repository, work_dir / "tritonserver.log", models=FAMILY_MODELS[args.family]) as server:
        suite(config, repository, server.grpc_url, server.metrics_url, out_dir, stop_server=server.stop)
    print("update the README's performance section with: python -m tritone.benchmarks readme")
    return 0


if __name__ == "__main__":
    sys.exit(main())
