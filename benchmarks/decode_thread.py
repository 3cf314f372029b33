"""Where the LM is loaded against where it is stepped: the decode step's time, each placement in a fresh process.

python -m tritone.benchmarks decode-thread --repository DIR [--family musicgen] [--streams 1,8] [--repeats 3]

- `one thread`: the pipeline loads its LM on its DecodeThread and the steps run there, as served
  (ensemble/engine/decode_thread.py);
- `loaded elsewhere`: the LM loaded on the process's main thread and stepped on another thread, as
  the Triton stub did before (model loaded in `initialize`, decode loop on a thread of its own).

Each measurement is a new process (a process's OpenMP teams outlive the threads' work), the two
placements alternate in every repeat, and the engine is driven locally (no Triton, codec stubbed)
with the family's CPU target knobs (`lm_runtime`/`dtype` auto). Results: OUT/results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tritone.benchmarks.bf16 import family_part, machine, time_steps
from tritone.benchmarks.runner import level_list
from tritone.ensemble.engine.decode_thread import run_on_decode_thread
from tritone.ensemble.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "decode_thread"
PLACEMENTS = ("one thread", "loaded elsewhere")


class _OnCaller:
    """A stand-in DecodeThread that runs `call` on the calling thread (the main thread loads the LM)."""

    def call(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


def _measure(family: str, repository: Path, streams: list[int], steps: int, warmup: int, decode_thread) -> dict:
    part, marks = family_part(family), []
    pipe = part.pipeline(repository, "auto", "auto", max(streams), lambda stats: marks.append(time.perf_counter()),
                         decode_thread)

    def run() -> dict:
        return {str(n): float(np.median(time_steps(pipe, marks, part, n, steps, warmup))) for n in streams}

    if isinstance(decode_thread, _OnCaller):  # loaded here, on the main thread: step on another one
        result: dict = {}
        stepper = threading.Thread(target=lambda: result.update(run()), name="stepper")
        stepper.start()
        stepper.join()
        return {"ms_per_step": result, "lm": str(pipe.lm)}
    return {"ms_per_step": run(), "lm": str(pipe.lm)}


def child(placement: str, family: str, repository: Path, streams: list[int], steps: int, warmup: int) -> dict:
    if placement == PLACEMENTS[0]:
        return run_on_decode_thread("decode", _measure, family, repository, streams, steps, warmup)
    return _measure(family, repository, streams, steps, warmup, _OnCaller())


def _run_child(placement: str, args) -> dict:
    command = [sys.executable, "-m", "tritone.benchmarks.decode_thread", "--child", placement,
               "--family", args.family, "--repository", str(args.repository),
               "--streams", ",".join(map(str, args.streams)), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{placement}: the measuring process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(results: dict) -> str:
    m, s = results["machine"], results["settings"]
    flags = ", ".join(flag for flag, has in m["cpu"]["flags"].items() if has)
    lines = ["# Where the LM is loaded: the decode step on CPU", "",
             f"- CPU: {m['cpu']['model']} ({flags}), {m['cores']} cores, torch {m['torch']}; LM: {results['lm']}",
             f"- {results['family']}, {s['steps']} timed steps after {s['warmup']} warm-up, {s['repeats']} repeats "
             f"alternating the placements, each in a fresh process; the median of the repeats' medians. "
             f"Measured {results['measured_at']}; 1-minute load average before: {results['load_average_1m']:.2f}.", "",
             "| streams | one thread (ms/step) | loaded elsewhere (ms/step) | loaded elsewhere / one thread |",
             "|---:|---:|---:|---:|"]
    for row in results["table"]:
        lines.append(f"| {row['streams']} | {row['one_thread_ms']:.1f} | {row['loaded_elsewhere_ms']:.1f} | "
                     f"{row['ratio']:.2f}x |")
    return "\n".join(lines + [""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritone.benchmarks decode-thread",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True, help="the family's export (e.g. small-random)")
    parser.add_argument("--family", choices=sorted(FAMILIES), default="musicgen")
    parser.add_argument("--streams", type=level_list, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", choices=PLACEMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if family_part(args.family) is None:
        parser.error(f"--family {args.family}: it has no benchmarks/{args.family}/bf16.py")
    if args.child:
        print(json.dumps(child(args.child, args.family, args.repository, args.streams, args.steps, args.warmup)))
        return 0
    load = os.getloadavg()[0]
    runs = {p: [] for p in PLACEMENTS}
    lm = ""
    for repeat in range(args.repeats):
        for placement in PLACEMENTS[repeat % 2:] + PLACEMENTS[:repeat % 2]:
            measured = _run_child(placement, args)
            runs[placement].append(measured["ms_per_step"])
            lm = measured["lm"]
            print(f"repeat {repeat + 1}/{args.repeats}, {placement}: "
                  + ", ".join(f"{n} streams {ms:.1f} ms" for n, ms in measured["ms_per_step"].items()), flush=True)
    table = []
    for n in map(str, args.streams):
        one, elsewhere = (float(np.median([r[n] for r in runs[p]])) for p in PLACEMENTS)
        table.append({"streams": int(n), "one_thread_ms": one, "loaded_elsewhere_ms": elsewhere,
                      "ratio": elsewhere / one})
    results = {"family": args.family, "lm": lm, "machine": machine(), "load_average_1m": load,
               "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": "python -m tritone.benchmarks decode-thread " + " ".join(argv or sys.argv[1:]),
               "settings": {"streams": args.streams, "repeats": args.repeats, "steps": args.steps,
                            "warmup": args.warmup},
               "runs": runs, "table": table}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
