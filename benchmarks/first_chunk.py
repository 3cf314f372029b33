"""python -m tritone.benchmarks first-chunk --family musicgen --model small-random [--sizes 10,5,1]
                                      [--concurrency 1,4,8] [--duration S] [--rounds 2] [--repeats 1]

Should a stream's first chunk be shorter when the decode batch is large? A busy batch steps more slowly, so
every frame a listener waits for costs more; a shorter first chunk arrives sooner but adds a codec call with
its context. `busy_first_frames` / `busy_streams` (ensemble/engine/chunker.py) are the knob; this recipe
chooses their defaults.

For each first-chunk size, the family's pipeline config (CPU target) gets `busy_first_frames` = size and
`busy_streams` = 1 (every stream's first chunk is that size; the family's `first_frames` is the knob off),
a tritonserver is started on it, and the family's benchmark streams (its suite's `workload_for`: prompts,
seeds, sampling) run at each concurrency level, `max(N * rounds, min_requests)` requests through N closed-loop
clients. Per size and level: time to first audio p50/p95, audio seconds per wall second, chunks, playback
underruns and the served decode step. Repeats run the sizes in alternating order (this machine is shared and
noisy); the tables give each figure's median over repeats. The committed config is restored at the end.

Writes OUT/results.json (a section per family, others kept) and OUT/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
from datetime import datetime, timezone
from pathlib import Path

from tritone.benchmarks import registry
from tritone.benchmarks.load import run_levels
from tritone.benchmarks.runner import git_info, level_list, machine_info, prepare_repository, triton_server
from tritone.ensemble.families import FAMILIES
from tritone.ensemble.triton.spec import write_config
from tritone.serving.container import sync_skeleton

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "first_chunk"


def pipeline_spec(family: str):
    return FAMILIES[family].models()[-1]  # the decoupled pipeline comes last


def policy_first_frames(family: str) -> int:
    return int(pipeline_spec(family).targets["cpu"].parameters["first_frames"])


def default_sizes(first: int) -> list[int]:
    """The knob off (first_frames), about half of it, and one frame."""
    return sorted({first, math.ceil(first / 2), 1}, reverse=True)


def variant_parameters(size: int, first: int) -> dict[str, str]:
    return {"busy_first_frames": "0" if size == first else str(size), "busy_streams": "1"}


def measure(args, log=print) -> dict:
    family = args.family
    first = policy_first_frames(family)
    sizes = args.sizes or default_sizes(first)
    if any(not 1 <= size <= first for size in sizes):
        raise SystemExit(f"sizes: each must be in [1, {first}] ({family}'s first_frames), got {sizes}")
    suite = registry.suite(family)
    config = suite.Config.create(args.model)
    duration = args.duration or config.duration
    work_dir = Path(args.work_dir) / args.model  # as `run`'s: the export is shared
    repository = prepare_repository(args.model, work_dir, log=log, family=family)
    workload = suite.workload_for(config, repository)
    machine, started = machine_info(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs = []
    try:
        for repeat in range(args.repeats):
            for size in sizes if repeat % 2 == 0 else sizes[::-1]:
                write_config(repository, pipeline_spec(family), "cpu", variant_parameters(size, first))
                log(f"{family}, first chunk {size} frames (repeat {repeat + 1} of {args.repeats}):")
                log_file = work_dir / f"first_chunk_{family}_{size}.log"
                records = {}
                with triton_server(repository, log_file, log=log, models=registry.models(family)) as server:
                    levels = asyncio.run(run_levels(
                        server.grpc_url, server.metrics_url, args.concurrency, workload.make_requests, duration,
                        stream=workload.stream, engine=workload.engine, rounds=args.rounds,
                        min_requests=args.min_requests, records=records, log=log))
                for level in levels:  # what the knob changed: the audio in each stream's first chunk
                    level["first_chunk_audio_s"] = _median([r.arrivals[0][1] for r in records[level["concurrency"]]
                                                            if r.arrivals])
                runs.append({"size": size, "repeat": repeat, "levels": levels})
    finally:
        sync_skeleton(repository)  # the committed configs back
    return {"family": family, "model": args.model, "first_frames": first, "sizes": sizes, "duration_s": duration,
            "concurrency": args.concurrency, "rounds": args.rounds, "min_requests": args.min_requests,
            "repeats": args.repeats, "machine": machine, "git": git_info(), "date": started, "runs": runs}


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summary(section: dict) -> list[dict]:
    """One row per level and size: the median over repeats of each figure, and TTFA and throughput against
    the knob off (first_frames) at the same level."""
    rows = []
    for concurrency in section["concurrency"]:
        by_size = {}
        for size in section["sizes"]:
            levels = [level for run in section["runs"] if run["size"] == size
                      for level in run["levels"] if level["concurrency"] == concurrency]
            by_size[size] = {
                "first_chunk_ms": _ms(_median([lv.get("first_chunk_audio_s") for lv in levels])),
                "ttfa_p50_ms": _ms(_median([lv["time_to_first_audio_s"]["p50"] for lv in levels])),
                "ttfa_p95_ms": _ms(_median([lv["time_to_first_audio_s"]["p95"] for lv in levels])),
                "audio_s_per_wall_s": _median([lv["audio_s_per_wall_s"] for lv in levels]),
                "chunks_per_stream": _median([lv["chunks"] / lv["completed"] for lv in levels if lv["completed"]]),
                "stall_s_per_stream": _median([lv["underruns"]["stall_s"] / lv["completed"]
                                               for lv in levels if lv["completed"]]),
                "ms_per_step": _median([lv["decode"]["ms_per_step"] for lv in levels]),
                "errors": sorted({e for lv in levels for e in lv["errors"]}),
            }
        off = by_size.get(section["first_frames"], {})
        for size, row in by_size.items():
            rows.append({"concurrency": concurrency, "size": size, **row,
                         "ttfa_p95_vs_off": _ratio(row["ttfa_p95_ms"], off.get("ttfa_p95_ms")),
                         "throughput_vs_off": _ratio(row["audio_s_per_wall_s"], off.get("audio_s_per_wall_s"))})
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _ratio(value, base) -> float | None:
    return value / base if value is not None and base else None


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def markdown(results: dict) -> str:
    lines = ["# The first chunk's size under load", "",
             "Each size: the family's pipeline config with `busy_first_frames` = size and `busy_streams` = 1 (every "
             "stream's first chunk that long; the family's `first_frames` is the knob off), served by tritonserver "
             "on CPU, the family's benchmark streams at each level. Medians over repeats. Written by "
             "`python -m tritone.benchmarks first-chunk` (benchmarks/first_chunk.py).", ""]
    for family in FAMILIES:
        section = results.get(family)
        if not section:
            continue
        m = section["machine"]
        flags = ", ".join(flag for flag, has in (m.get("cpu_flags") or {}).items() if has)
        lines += [f"## {family}, {section['model']}", "",
                  f"{section['duration_s']:g} s per request; levels {section['concurrency']}, "
                  f"{section['rounds']} round(s), at least {section['min_requests']} requests; {section['repeats']} "
                  f"repeat(s); first_frames {section['first_frames']}. Measured on {m.get('cpu_model')} (flags: "
                  f"{flags}), {m.get('cores')} cores, load average before {m.get('load_average')}; commit "
                  f"{section['git'].get('commit', '?')[:10]}; {section['date']}.", "",
                  "| Streams | First chunk: frames (ms of audio) | TTFA p50 / p95 (ms) | TTFA p95 vs off | Audio s per wall s | "
                  "Throughput vs off | Chunks per stream | Stall s per stream | Served step (ms) | Errors |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in summary(section):
            lines.append(
                f"| {row['concurrency']} | {row['size']}{' (off)' if row['size'] == section['first_frames'] else ''} "
                f"({_f(row['first_chunk_ms'])}) "
                f"| {_f(row['ttfa_p50_ms'], 4)} / {_f(row['ttfa_p95_ms'], 4)} | {_f(row['ttfa_p95_vs_off'])} "
                f"| {_f(row['audio_s_per_wall_s'])} | {_f(row['throughput_vs_off'])} | {_f(row['chunks_per_stream'])} "
                f"| {_f(row['stall_s_per_stream'])} | {_f(row['ms_per_step'])} | {', '.join(row['errors']) or '-'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritone.benchmarks first-chunk", description=__doc__.split("\n\n")[1])
    parser.add_argument("--family", default=registry.default_family(), choices=registry.choices())
    parser.add_argument("--model", required=True, choices=("tiny-random", "small-random"))
    parser.add_argument("--sizes", type=level_list, default=None,
                        help="first-chunk sizes in frames (default: first_frames, about half of it, 1)")
    parser.add_argument("--concurrency", type=level_list, default=[1, 4, 8])
    parser.add_argument("--duration", type=float, default=None, help="seconds per request (default: the suite's)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-requests", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="each repeat runs the sizes in the other order")
    parser.add_argument("--work-dir", type=Path, default=ROOT / ".tritone" / "bench",
                        help="the export goes to WORK_DIR/<model>/model_repository, as `run`'s")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.family = registry.family_named(args.family)
    section = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[args.family] = section
    path.write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(f"wrote {path} and {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
