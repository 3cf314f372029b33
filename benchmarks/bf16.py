"""python -m tritone.benchmarks bf16 --repository DIR [--family FAMILY ...] [--streams 1,8,16] [--repeats 3]
                               [--steps 8] [--prompts 20] [--out benchmarks/results/bf16]

What bfloat16 buys on this CPU, for each family's LM step, measured on its engine driven locally
(no Triton, codec stubbed; DIR holds the families' exports, e.g. `python -m tritone.export musicgen
--checkpoint small-random --out DIR`, the same for orpheus):

- step time at N streams of ONNX Runtime float32 (what the CPU target ran before `dtype: auto`),
  torch float32 and torch bfloat16, the three interleaved in every repeat (the order rotates) so
  that load from other processes falls on all of them alike; the median over repeats of each
  repeat's median step. A step is timed from run_once() to the end of the LM step (`on_step`),
  after every stream has prefilled;
- greedy agreement over --prompts prompts: the codes torch bfloat16 generates against ONNX Runtime
  float32's (and torch float32's against ONNX Runtime float32's, the control): how many prompts'
  codes are identical, and the mean number of frames that agree before the first difference;
- whether ONNX Runtime can run bfloat16 at all (a one-MatMul bfloat16 graph: it has no CPU kernel).

A family's part is benchmarks/<family>/bf16.py (pipeline, submit, steps_per_audio_second, AGREEMENT_SECONDS).
Writes OUT/results.json (one section per family, others kept) and OUT/results.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tritone.benchmarks.runner import cores, level_list
from tritone.benchmarks.step_timing import time_decode_steps
from tritone.ensemble.engine.cpu_features import CpuFeatures
from tritone.ensemble.engine.decode_thread import run_on_decode_thread
from tritone.ensemble.engine.lm_choice import resolve_lm
from tritone.ensemble.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bf16"
VARIANTS = (("onnxruntime", "float32"), ("torch", "float32"), ("torch", "bfloat16"))
REFERENCE = "onnxruntime float32"  # what agreement compares against


def variant_name(runtime: str, dtype: str) -> str:
    return f"{runtime} {dtype}"


def family_part(name: str):
    """benchmarks/<family>/bf16.py, or None where the family has none."""
    module = f"{FAMILIES[name].benchmark}.bf16"
    try:
        return importlib.import_module(module) if importlib.util.find_spec(module) else None
    except ModuleNotFoundError:
        return None


class Sink:
    """A stream that keeps its codes."""

    def __init__(self):
        self.codes, self.error, self.done, self.stopped = [], None, False, False

    def cancelled(self) -> bool:
        return self.stopped

    def send(self, chunk) -> None:
        if chunk.codes is not None:
            self.codes.append(chunk.codes)
        self.done = self.done or chunk.final

    def fail(self, error) -> None:
        self.error, self.done = error, True

    def close(self) -> None:
        self.done = True

    def all_codes(self) -> np.ndarray:
        return np.concatenate(self.codes, axis=1) if self.codes else np.zeros((0, 0), np.int64)


def onnxruntime_bf16() -> str:
    """Whether ONNX Runtime's CPU provider runs a bfloat16 MatMul: 'runs', or its error."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    tensor = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "bf16",
                              [tensor("a", TensorProto.BFLOAT16, [4, 4]), tensor("b", TensorProto.BFLOAT16, [4, 4])],
                              [tensor("y", TensorProto.BFLOAT16, [4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return "runs"
    except Exception as error:  # noqa: BLE001 - the error is the result
        return str(error).strip()


def _raise_failures(sinks) -> None:
    errors = [s.error for s in sinks if s.error is not None]
    if errors:
        raise RuntimeError(f"the engine failed a request: {errors[0]!r}")


def time_steps(pipe, marks: list, part, n: int, steps: int, warmup: int) -> list[float]:
    """ms of each of `steps` LM steps with n streams decoding (after `warmup` untimed ones)."""
    engine = pipe.engine
    seconds = (400 + warmup + steps) / part.steps_per_audio_second(pipe)  # outlasts prefill and timing
    sinks = [Sink() for _ in range(n)]
    part.submit(pipe, sinks, seconds, greedy=False)
    for _ in range(1000):  # admit all and let every prompt prefill
        engine.run_once(emit_inline=True)
        if len(engine.active) == n and not any(slot.prefilling for slot in engine.active):
            break
    else:
        raise RuntimeError(f"{n} streams did not all start decoding")
    times = [seconds * 1e3 for seconds in time_decode_steps(engine, marks, warmup=warmup, steps=steps)]
    if len(engine.active) != n:
        raise RuntimeError(f"a stream ended while timed ({len(engine.active)} of {n} left): make them longer")
    for sink in sinks:
        sink.stopped = True
    engine.run_once(emit_inline=True)  # drops them
    _raise_failures(sinks)
    return times


def greedy_codes(pipe, part, count: int, seconds: float) -> list[np.ndarray]:
    """Each of `count` prompts' greedy codes [K, frames], all submitted at once."""
    sinks = [Sink() for _ in range(count)]
    part.submit(pipe, sinks, seconds, greedy=True)
    for _ in range(100_000):
        if all(sink.done for sink in sinks):
            break
        pipe.engine.run_once(emit_inline=True)
    else:
        raise RuntimeError("greedy requests did not finish")
    _raise_failures(sinks)
    return [sink.all_codes() for sink in sinks]


def first_step_logits(pipe, part) -> np.ndarray:
    """Prompt 0's logits from its first LM step, [rows x codebooks, vocab] (the same inputs on every runtime)."""
    lm, recorded = pipe.family.lm, []

    def record(*args):
        out = type(lm).step(lm, *args)
        recorded.append(out[0])
        return out

    lm.step = record
    try:
        sinks = [Sink()]
        part.submit(pipe, sinks, 0.5, greedy=True)
        while not all(sink.done for sink in sinks):
            pipe.engine.run_once(emit_inline=True)
    finally:
        del lm.step
    _raise_failures(sinks)
    return recorded[0].reshape(-1, recorded[0].shape[-1])


def logit_error(fp32: np.ndarray, bf16: np.ndarray) -> dict:
    """How far bf16 moves the logits, beside how far apart fp32's two best are: greedy flips where the
    error exceeds the margin."""
    best = np.sort(fp32, axis=-1)[:, -2:]
    error = np.abs(bf16 - fp32)
    return {"rows": int(fp32.shape[0]), "fp32_median_top1_top2_margin": float(np.median(best[:, 1] - best[:, 0])),
            "median_abs_error": float(np.median(error)), "max_abs_error": float(error.max()),
            "same_argmax_rows": int((fp32.argmax(-1) == bf16.argmax(-1)).sum())}


def agreement(reference: list[np.ndarray], other: list[np.ndarray]) -> dict:
    """Per prompt: identical codes? frames equal before the first difference (a shorter run that is a
    prefix of the other counts its length)."""
    agreeing, identical, frames = [], 0, []
    for ref, got in zip(reference, other):
        same = ref.shape == got.shape and np.array_equal(ref, got)
        identical += same
        common = min(ref.shape[1], got.shape[1])
        differs = np.flatnonzero((ref[:, :common] != got[:, :common]).any(axis=0))
        agreeing.append(int(differs[0]) if differs.size else common)
        frames.append(int(ref.shape[1]))
    return {"prompts": len(reference), "identical": int(identical), "frames_agreeing": agreeing,
            "mean_frames_agreeing": float(np.mean(agreeing)), "reference_frames": frames,
            "mean_reference_frames": float(np.mean(frames))}


def measure_family(name: str, repository: Path, streams: list[int], repeats: int, steps: int, warmup: int,
                   prompts: int, log=print) -> dict:
    """Every variant loaded and stepped on one thread, as served (ensemble/engine/decode_thread.py)."""
    return run_on_decode_thread(f"{name}-bf16", _measure_family, name, repository, streams, repeats, steps, warmup,
                                prompts, log)


def _measure_family(name: str, repository: Path, streams: list[int], repeats: int, steps: int, warmup: int,
                    prompts: int, log, decode_thread) -> dict:
    part = family_part(name)
    slots = max(max(streams), prompts)
    pipes, marks = {}, {}
    for runtime, dtype in VARIANTS:
        key = variant_name(runtime, dtype)
        marks[key] = []
        started = time.perf_counter()
        pipes[key] = part.pipeline(repository, runtime, dtype, slots, lambda stats, m=marks[key]: m.append(
            time.perf_counter()), decode_thread)
        log(f"{name}: {key} loaded in {time.perf_counter() - started:.1f}s ({pipes[key].lm})")
    keys = list(pipes)
    runs = {key: {str(n): [] for n in streams} for key in keys}  # each repeat's median ms
    load = []  # the 1-minute load average after each interleaved group: what else ran on the CPU
    for repeat in range(repeats):
        order = keys[repeat % len(keys):] + keys[:repeat % len(keys)]
        for n in streams:
            for key in order:
                ms = time_steps(pipes[key], marks[key], part, n, steps, warmup)
                runs[key][str(n)].append(float(np.median(ms)))
                log(f"{name} repeat {repeat + 1}/{repeats}: {n:>2} streams, {key}: {np.median(ms):.1f} ms/step")
            load.append(os.getloadavg()[0])
    rate = part.steps_per_audio_second(pipes[keys[0]])
    step_ms = {key: {n: float(np.median(values)) for n, values in per.items()} for key, per in runs.items()}
    table = []
    for n in streams:
        n = str(n)
        ort, t32, bf16 = (step_ms[variant_name(*v)][n] for v in VARIANTS)
        table.append({"streams": int(n), "onnxruntime_float32_ms": ort, "torch_float32_ms": t32,
                      "torch_bfloat16_ms": bf16, "bf16_speedup_vs_onnxruntime_fp32": ort / bf16,
                      "bf16_speedup_vs_torch_fp32": t32 / bf16,
                      "decode_audio_s_per_s": {key: int(n) / (step_ms[key][n] / 1e3 * rate) for key in keys}})
    seconds = part.AGREEMENT_SECONDS
    codes = {}
    for key in keys:
        started = time.perf_counter()
        codes[key] = greedy_codes(pipes[key], part, prompts, seconds)
        log(f"{name}: {prompts} greedy prompts of {seconds:g}s on {key} in {time.perf_counter() - started:.0f}s")
    logits = {key: first_step_logits(pipes[key], part) for key in (variant_name("torch", "float32"),
                                                                   variant_name("torch", "bfloat16"))}
    agree = {"first_step_logits": logit_error(*logits.values()),
             "bfloat16": agreement(codes[REFERENCE], codes[variant_name("torch", "bfloat16")]),
             "control_torch_float32": agreement(codes[REFERENCE], codes[variant_name("torch", "float32")]),
             "seconds_per_prompt": seconds, "reference": REFERENCE}
    for label, result in agree.items():
        if isinstance(result, dict) and "identical" in result:
            log(f"{name} agreement {label}: {result['identical']}/{result['prompts']} identical, "
                f"{result['mean_frames_agreeing']:.1f} of {result['mean_reference_frames']:.1f} frames agree on average")
    return {"steps_per_audio_second": rate, "step_ms": step_ms, "repeat_medians_ms": runs, "table": table,
            "agreement": agree, "load_average_1m": {"median": float(np.median(load)), "max": float(max(load))}}


def machine() -> dict:
    import onnxruntime
    import torch

    return {"cpu": CpuFeatures.detect().describe(), "cores": cores(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "onnxruntime_bfloat16_matmul": onnxruntime_bf16(), "auto_resolves_to": str(resolve_lm("auto", "cpu", "auto"))}


def markdown(results: dict) -> str:
    m = results["machine"]
    flags = ", ".join(f"{flag} {'yes' if has else 'no'}" for flag, has in m["cpu"]["flags"].items())
    lines = [
        "# bf16 vs fp32: the LM step on CPU", "",
        f"- CPU: {m['cpu']['model']}, {m['cores']} cores (torch threads {m['torch_threads']}); flags: {flags}",
        f"- torch {m['torch']}, ONNX Runtime {m['onnxruntime']}; `dtype: auto` here: {m['auto_resolves_to']}",
        f"- ONNX Runtime bfloat16 MatMul on CPU: {m['onnxruntime_bfloat16_matmul']}",
        "- Step times: the engine driven locally (no Triton, codec stubbed), every stream prefilled; the three "
        "runtimes interleaved in each repeat; the median of the repeats' median steps. Other processes shared the "
        "CPU (the 1-minute load average is given per family).", ""]
    order = list(FAMILIES)
    for name, family in sorted(results["families"].items(), key=lambda item: order.index(item[0])
                               if item[0] in order else len(order)):
        load, run = family["load_average_1m"], family["settings"]
        lines += [f"## {name}", "", f"Measured {family['measured_at']} with `{family['command']}`: "
                  f"{run['steps']} timed steps after {run['warmup']} warm-up ones, {run['repeats']} repeats. "
                  f"1-minute load average while timed: median {load['median']:.1f}, max {load['max']:.1f} "
                  f"({m['cores']} cores).", "",
                  "| streams | ONNX Runtime fp32 ms | torch fp32 ms | torch bf16 ms | bf16 vs ORT fp32 | "
                  "bf16 vs torch fp32 | decode-only audio s/s ORT fp32 → bf16 |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for row in family["table"]:
            audio = row["decode_audio_s_per_s"]
            lines.append(f"| {row['streams']} | {row['onnxruntime_float32_ms']:.1f} | {row['torch_float32_ms']:.1f} | "
                         f"{row['torch_bfloat16_ms']:.1f} | {row['bf16_speedup_vs_onnxruntime_fp32']:.2f}x | "
                         f"{row['bf16_speedup_vs_torch_fp32']:.2f}x | {audio['onnxruntime float32']:.2f} → "
                         f"{audio['torch bfloat16']:.2f} |")
        a = family["agreement"]
        for label, key in (("torch bf16", "bfloat16"), ("torch fp32 (control)", "control_torch_float32")):
            r = a[key]
            lines.append(f"\nGreedy, {r['prompts']} prompts of {a['seconds_per_prompt']:g} s, {label} vs "
                         f"{a['reference']}: {r['identical']}/{r['prompts']} identical; on average "
                         f"{r['mean_frames_agreeing']:.1f} of {r['mean_reference_frames']:.1f} frames agree before "
                         "the first difference.")
        if "first_step_logits" in a:
            e = a["first_step_logits"]
            lines.append(f"\nWhy: prompt 0's first step in torch, bf16 against fp32 (same inputs): logits move by "
                         f"{e['median_abs_error']:.3g} (median; max {e['max_abs_error']:.3g}); fp32's best two "
                         f"logits are {e['fp32_median_top1_top2_margin']:.3g} apart (median over {e['rows']} rows), "
                         f"and {e['same_argmax_rows']} of {e['rows']} rows keep their argmax. Greedy flips wherever a "
                         "row's margin is below the error, and every later frame follows the flip. These are random "
                         "weights; a trained checkpoint's (more peaked) distributions are not measured here.")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritone.benchmarks bf16", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True, help="the families' exports (e.g. small-random)")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES),
                        help="repeat for several (default: every family with a benchmarks/<family>/bf16.py)")
    parser.add_argument("--streams", type=level_list, default=[1, 8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=20, help="greedy prompts compared")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    names = args.family or [name for name in FAMILIES if family_part(name) is not None]
    for name in names:
        if family_part(name) is None:
            parser.error(f"--family {name}: it has no benchmarks/{name}/bf16.py")
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"families": {}}
    results["machine"] = machine()
    command = "python -m tritone.benchmarks bf16 " + " ".join(argv if argv is not None else sys.argv[1:])
    settings = {"streams": args.streams, "repeats": args.repeats, "steps": args.steps, "warmup": args.warmup,
                "prompts": args.prompts}
    for name in names:
        measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        results["families"][name] = {"measured_at": measured_at, "command": command, "settings": settings,
                                     **measure_family(name, args.repository, args.streams, args.repeats, args.steps,
                                                      args.warmup, args.prompts)}
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "results.md").write_text(markdown(results))
    print(f"wrote {path} and {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
