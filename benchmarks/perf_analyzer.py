"""Triton's perf_analyzer over the checked-in recipes (`benchmarks/recipes/*.json`).

The binary is the one the `tritonclient==2.51.0` wheel installs next to the interpreter (newer
`perf-analyzer` wheels need glibc 2.38). It links Debian's `libb64.so.0d` and
`libcudart.so.12`, which comes from PyPI's `nvidia-cuda-runtime-cu12` and is put on
`LD_LIBRARY_PATH` here. Missing pieces raise `PerfAnalyzerNotInstalled` naming the install line.

A recipe holds every perf_analyzer flag; a run adds only what depends on the run: `-m`, `-u`,
`--input-data` (the recipe's file), `--concurrency-range C:C:1` (one process per concurrency, so
the levels can be 1, 2, 4, 8), `-f` and `--profile-export-file` (under `out_dir/raw/`). A
`smoke` section shrinks the concurrency list, the windows and (speech codecs) the batching modes.
A recipe may measure an ensemble (musicgen_text_conditioning: raw text in); a point then also
reports each step model's average batch size (`step_avg_batch_size`).
A family's recipes are those whose model is one of its models (FAMILY_RECIPES, from the registry,
in its spec's order); the suite runs the first registered family's (musicgen's) unless told
(`recipes=`, `--family`, `--recipe`). Batching `"none"` reloads the
model through Triton's repository API with the served config minus `dynamic_batching` (the
server must run in explicit model-control mode) and afterwards unloads and loads it again from
the repository, as it was.

    results = run_perf_analyzer_suite("127.0.0.1:8001", Path("results"), smoke=True)
    python -m tritone.benchmarks.perf_analyzer --url 127.0.0.1:8001 --out results --smoke [--family speech]
"""

from __future__ import annotations

import csv
import ctypes
import importlib.metadata
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tritone.benchmarks import registry
from tritone.ensemble.families import FAMILIES

BENCHMARKS = Path(__file__).resolve().parent
RECIPES = BENCHMARKS / "recipes"


def family_recipes(family: str) -> tuple[str, ...]:
    """The recipes (recipes/<name>.json) measuring the family's models, in its spec's order."""
    by_model: dict[str, list[str]] = {}
    for path in sorted(RECIPES.glob("*.json")):
        by_model.setdefault(json.loads(path.read_text())["model"], []).append(path.stem)
    return tuple(name for model in registry.models(family) for name in by_model.get(model, ()))


FAMILY_RECIPES = {family: family_recipes(family) for family in FAMILIES}  # by registry name
ALL_RECIPES = tuple(name for names in FAMILY_RECIPES.values() for name in names)
DEFAULT_RECIPES = FAMILY_RECIPES[registry.default_family()]

APT_LIBB64 = "apt-get install libb64-0d"
PIP_CUDART = "pip install nvidia-cuda-runtime-cu12"
PIP_TRITONCLIENT = "pip install tritonclient[grpc]==2.51.0"


class PerfAnalyzerNotInstalled(RuntimeError):
    """The perf_analyzer binary or a library it links is missing; the message says what to install."""


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer ran and failed (unstable measurement, server error, timeout)."""


# --- the binary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    library_dirs: tuple[Path, ...]

    @property
    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        dirs = [str(d) for d in self.library_dirs]
        if env.get("LD_LIBRARY_PATH"):
            dirs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs)
        return env

    def run(self, args: Sequence[str], timeout: float, log: Path | None = None) -> str:
        """Run with `args`; returns stdout+stderr, raises PerfAnalyzerError on failure."""
        command = [str(self.binary), *args]
        try:
            done = subprocess.run(command, env=self.environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            _write(log, output)
            raise PerfAnalyzerError(f"perf_analyzer ran past {timeout:.0f} s: {shlex.join(command)}\n"
                                    f"{output[-2000:]}") from None
        _write(log, done.stdout)
        if "error while loading shared libraries" in done.stdout:
            raise PerfAnalyzerNotInstalled(_library_message(done.stdout))
        if done.returncode != 0:
            raise PerfAnalyzerError(f"perf_analyzer exited with {done.returncode}: {shlex.join(command)}\n"
                                    f"{done.stdout[-2000:]}")
        return done.stdout


def _write(path: Path | None, text: str) -> None:
    if path is not None:
        path.write_text(text)


def _library_message(output: str) -> str:
    if "libb64" in output:
        return f"perf_analyzer needs Debian's libb64: {APT_LIBB64}"
    if "libcudart" in output:
        return f"perf_analyzer needs libcudart.so.12: {PIP_CUDART}"
    return f"perf_analyzer cannot load a shared library: {output.strip()[-500:]}"


def _tritonclient_binary() -> Path:
    try:
        dist = importlib.metadata.distribution("tritonclient")
    except importlib.metadata.PackageNotFoundError:
        raise PerfAnalyzerNotInstalled(f"tritonclient is not installed: {PIP_TRITONCLIENT}") from None
    for entry in dist.files or ():
        if entry.name == "perf_analyzer" and entry.parent.name == "bin":
            path = Path(dist.locate_file(entry)).resolve()
            if path.is_file():
                return path
    raise PerfAnalyzerNotInstalled(
        f"tritonclient {dist.version} carries no bin/perf_analyzer (the manylinux x86_64 wheel does): "
        f"{PIP_TRITONCLIENT}")


def _cudart_dir() -> Path:
    spec = importlib.util.find_spec("nvidia.cuda_runtime") if importlib.util.find_spec("nvidia") else None
    for location in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(location) / "lib"
        if (lib / "libcudart.so.12").is_file():
            return lib
    raise PerfAnalyzerNotInstalled(f"perf_analyzer needs libcudart.so.12: {PIP_CUDART}")


def _check_libb64() -> None:
    try:
        ctypes.CDLL("libb64.so.0d")
    except OSError:
        raise PerfAnalyzerNotInstalled(f"perf_analyzer needs Debian's libb64: {APT_LIBB64}") from None


def find_perf_analyzer() -> PerfAnalyzer:
    """The tritonclient wheel's perf_analyzer with its libraries, checked by running `--help`."""
    binary = _tritonclient_binary()
    _check_libb64()
    analyzer = PerfAnalyzer(binary=binary, library_dirs=(_cudart_dir(),))
    done = subprocess.run([str(binary), "--help"], env=analyzer.environment, capture_output=True, text=True,
                          timeout=30)
    output = done.stdout + done.stderr
    if "error while loading shared libraries" in output:
        raise PerfAnalyzerNotInstalled(_library_message(output))
    if "--concurrency-range" not in output:
        raise PerfAnalyzerNotInstalled(f"{binary} --help does not look like perf_analyzer: {output[-500:]}")
    return analyzer


# --- recipes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    model: str
    input_data: Path
    concurrency: tuple[int, ...]
    batching: tuple[str, ...]  # "rendered" (the config as loaded) and/or "none" (no dynamic_batching)
    profile_export: bool
    timeout_s: float
    flags: dict[str, str | bool] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, smoke: bool = False) -> Recipe:
        raw = json.loads(path.read_text())
        flags = dict(raw["flags"])
        concurrency, timeout = raw["concurrency"], raw["timeout_s"]
        batching = raw["batching"]
        if smoke:
            flags.update(raw["smoke"].get("flags", {}))
            concurrency = raw["smoke"].get("concurrency", concurrency)
            timeout = raw["smoke"].get("timeout_s", timeout)
            batching = raw["smoke"].get("batching", batching)
        warmup = int(flags.get("--warmup-request-count", 0))
        if 0 < warmup < max(concurrency):
            # perf_analyzer 2.51 hangs (sync and streaming) when it warms up with fewer requests
            # than the concurrency it measures
            raise ValueError(f"{path}: --warmup-request-count {warmup} must be 0 or at least the "
                             f"largest concurrency {max(concurrency)} (perf_analyzer 2.51 hangs otherwise)")
        for mode in batching:
            if mode not in ("rendered", "none"):
                raise ValueError(f"{path}: batching must be 'rendered' or 'none', got {mode!r}")
        return cls(name=path.stem, description=raw["description"], model=raw["model"],
                   input_data=BENCHMARKS / raw["input_data"], concurrency=tuple(concurrency),
                   batching=tuple(batching), profile_export=raw["profile_export"],
                   timeout_s=float(timeout), flags=flags)

    def arguments(self, grpc_url: str, concurrency: int, csv_path: Path, export_path: Path | None) -> list[str]:
        args = ["-m", self.model, "-u", grpc_url, "--input-data", str(self.input_data),
                "--concurrency-range", f"{concurrency}:{concurrency}:1"]
        for flag, value in self.flags.items():
            if value is True:
                args.append(flag)
            elif value is not False:
                args += [flag, str(value)]
        args += ["-f", str(csv_path)]
        if export_path is not None:
            args += ["--profile-export-file", str(export_path)]
        return args


def load_recipes(smoke: bool = False, names: Sequence[str] = DEFAULT_RECIPES) -> list[Recipe]:
    return [Recipe.load(RECIPES / f"{name}.json", smoke=smoke) for name in names]


# --- Triton's repository and statistics APIs -------------------------------------------------


def _client(grpc_url: str):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(grpc_url)


def _config(client, model: str) -> dict:
    return client.get_model_config(model, as_json=True)["config"]


def _counts(client, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) summed over the model's versions."""
    stats = client.get_inference_statistics(model, as_json=True).get("model_stats", [])
    return (sum(int(s.get("inference_count", 0)) for s in stats),
            sum(int(s.get("execution_count", 0)) for s in stats))


def _avg_batch(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    inferences, executions = after[0] - before[0], after[1] - before[1]
    return round(inferences / executions, 3) if executions else None


def _ensemble_steps(client, model: str) -> tuple[str, ...]:
    """The models an ensemble runs, in order; () for any other model."""
    return tuple(step["model_name"] for step in _config(client, model).get("ensemble_scheduling", {}).get("step", []))


def _wait_ready(client, model: str, ready: bool, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while client.is_model_ready(model) != ready:
        if time.monotonic() > deadline:
            raise PerfAnalyzerError(f"{model} did not become {'ready' if ready else 'unloaded'} in {timeout:.0f} s")
        time.sleep(0.05)


@contextmanager
def as_served(grpc_url: str, model: str) -> Iterator[dict]:
    """The model as loaded (its rendered config); yields that config."""
    client = _client(grpc_url)
    try:
        yield _config(client, model)
    finally:
        client.close()


@contextmanager
def without_dynamic_batching(grpc_url: str, model: str) -> Iterator[dict]:
    """Reload `model` with its served config minus dynamic_batching; afterwards unload it and load
    it again from the repository (a plain load after an override keeps the override), falling
    back to the saved config as an override if the repository's no longer batches."""
    client = _client(grpc_url)
    original = _config(client, model)
    if "dynamic_batching" not in original:
        yield original
        return
    override = {k: v for k, v in original.items() if k != "dynamic_batching"}
    try:
        client.load_model(model, config=json.dumps(override))
        yield _config(client, model)
    finally:
        client.unload_model(model)
        _wait_ready(client, model, ready=False)
        client.load_model(model)
        _wait_ready(client, model, ready=True)
        if "dynamic_batching" not in _config(client, model):
            client.load_model(model, config=json.dumps(original))
        client.close()


# --- parsing ---------------------------------------------------------------------------------


def _ms(value: str | float) -> float:
    return round(float(value) / 1000.0, 3)  # perf_analyzer writes microseconds


def parse_csv(path: Path) -> dict:
    """The -f CSV's one row (one concurrency): throughput, client latency percentiles, server split."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise PerfAnalyzerError(f"{path}: expected one row, got {len(rows)}")
    row = rows[0]
    result = {
        "throughput_infer_per_s": float(row["Inferences/Second"]),
        "latency_ms": {p: _ms(row[f"{p} latency"]) for p in ("p50", "p90", "p95", "p99")},
        "server_queue_ms": _ms(row["Server Queue"]),
        "server_compute_ms": _ms(float(row["Server Compute Input"]) + float(row["Server Compute Infer"])
                                 + float(row["Server Compute Output"])),
    }
    if "Response Throughput" in row:
        result["response_throughput_per_s"] = float(row["Response Throughput"])
    return result


def _percentiles(values: Sequence[float], which: Sequence[int]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    out = {f"p{p}": round(float(np.percentile(array, p)), 3) for p in which}
    out["max"] = round(float(array.max()), 3)
    return out


def compact_profile_export(path: Path) -> dict:
    """Rewrite perf_analyzer's profile export without tensors: per request its send timestamp,
    response timestamps and audio samples per response (ns timestamps as perf_analyzer wrote them)."""
    raw = json.loads(path.read_text())
    experiments = []
    for experiment in raw["experiments"]:
        requests = []
        for request in experiment["requests"]:
            outputs = request.get("response_outputs", [])
            requests.append({
                "timestamp": request["timestamp"],
                "response_timestamps": request["response_timestamps"],
                "audio_samples": [len(o.get("audio", [])) for o in outputs],
                "sample_rate": next((o["sample_rate"] for o in outputs if "sample_rate" in o), None),
            })
        experiments.append({"experiment": experiment["experiment"],
                            "window_boundaries": experiment.get("window_boundaries"), "requests": requests})
    compact = {k: v for k, v in raw.items() if k != "experiments"} | {"experiments": experiments}
    path.write_text(json.dumps(compact))
    return compact


def stable_requests(experiment: dict) -> list[dict]:
    """The requests that completed inside the last three windows, the ones perf_analyzer's own
    figures come from once the measurement is stable (all of them if it logged fewer windows)."""
    done = [r for r in experiment["requests"] if r["response_timestamps"]]
    bounds = experiment.get("window_boundaries") or []
    if len(bounds) < 4:
        return done
    start, end = bounds[-4], bounds[-1]
    return [r for r in done if start <= r["response_timestamps"][-1] <= end]


def streaming_metrics(export: dict) -> dict:
    """Time to first response, inter-chunk gaps, chunks and audio per request and request latency
    (send to last response) over the requests of the stable windows."""
    first, gaps, last, chunks, audio_s = [], [], [], [], []
    recorded = 0
    for experiment in export["experiments"]:
        recorded += len(experiment["requests"])
        for request in stable_requests(experiment):
            times, sent = request["response_timestamps"], request["timestamp"]
            first.append((times[0] - sent) / 1e6)
            last.append((times[-1] - sent) / 1e6)
            gaps += [(b - a) / 1e6 for a, b in zip(times[:-1], times[1:], strict=True)]
            samples = [s for s in request.get("audio_samples", []) if s]
            chunks.append(len(samples) if samples else len(times))
            if samples and request.get("sample_rate"):
                audio_s.append(sum(samples) / request["sample_rate"])
    if not first:
        raise PerfAnalyzerError("the profile export holds no completed request")
    result = {
        "requests": len(first),
        "requests_in_export": recorded,
        "first_response_ms": _percentiles(first, (50, 95)),
        "inter_chunk_ms": _percentiles(gaps, (50, 95)) if gaps else None,
        "request_latency_ms": _percentiles(last, (50, 95)),
        "chunks_per_request": {"min": min(chunks), "max": max(chunks)},
    }
    if audio_s:
        result["audio_s_per_request"] = {"min": round(min(audio_s), 4), "max": round(max(audio_s), 4)}
    return result


# --- the suite -------------------------------------------------------------------------------


def _run_point(analyzer: PerfAnalyzer, recipe: Recipe, grpc_url: str, raw_dir: Path, batching: str,
               concurrency: int) -> dict:
    stem = f"{batching}-c{concurrency}"
    csv_path = raw_dir / f"{stem}.csv"
    export_path = raw_dir / f"{stem}.profile.json" if recipe.profile_export else None
    for path in (csv_path, export_path):
        if path is not None and path.exists():
            path.unlink()  # perf_analyzer refuses an existing export file
    args = recipe.arguments(grpc_url, concurrency, csv_path, export_path)
    client = _client(grpc_url)
    models = (recipe.model, *_ensemble_steps(client, recipe.model))
    before = {model: _counts(client, model) for model in models}
    started = time.monotonic()
    analyzer.run(args, timeout=recipe.timeout_s, log=raw_dir / f"{stem}.log")
    wall = time.monotonic() - started
    batch = {model: _avg_batch(before[model], _counts(client, model)) for model in models}
    client.close()
    point = {"batching": batching, "concurrency": concurrency, **parse_csv(csv_path),
             "server_avg_batch_size": batch[recipe.model],
             "wall_s": round(wall, 2), "command": shlex.join(["perf_analyzer", *args]),
             "csv": str(csv_path)}
    if len(models) > 1:  # an ensemble: its steps batch, each with its own batcher
        point["step_avg_batch_size"] = {model: batch[model] for model in models[1:]}
    if export_path is not None:
        metrics = streaming_metrics(compact_profile_export(export_path))
        point.update(metrics, profile_export=str(export_path))
        audio = metrics.get("audio_s_per_request")
        if audio:
            point["audio_s_per_s"] = round(point["throughput_infer_per_s"] * audio["max"], 3)
    return point


def _measure(analyzer: PerfAnalyzer, recipe: Recipe, grpc_url: str, raw_dir: Path, batching: str,
             concurrency: int, dynamic: bool) -> dict:
    """One point; an unstable measurement is tried once more, then any failure is recorded as
    the point's `error` so one bad point does not lose a long run."""
    for attempt in (1, 2):
        try:
            point = _run_point(analyzer, recipe, grpc_url, raw_dir, batching, concurrency)
            return {**point, "dynamic_batching": dynamic, "attempts": attempt}
        except PerfAnalyzerError as exc:
            if attempt == 1 and "stable measurement" in str(exc):
                continue
            return {"batching": batching, "concurrency": concurrency, "dynamic_batching": dynamic,
                    "attempts": attempt, "error": str(exc)}
    raise AssertionError("unreachable")


def run_recipe(analyzer: PerfAnalyzer, recipe: Recipe, grpc_url: str, raw_root: Path) -> dict:
    raw_dir = raw_root / recipe.name
    raw_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for batching in recipe.batching:
        served = without_dynamic_batching if batching == "none" else as_served
        with served(grpc_url, recipe.model) as config:
            dynamic = "dynamic_batching" in config
            runs += [_measure(analyzer, recipe, grpc_url, raw_dir, batching, c, dynamic) for c in recipe.concurrency]
    return {"model": recipe.model, "description": recipe.description, "input_data": str(recipe.input_data),
            "recipe": str(RECIPES / f"{recipe.name}.json"), "runs": runs}


def run_perf_analyzer_suite(grpc_url: str, out_dir: Path, smoke: bool = False,
                            recipes: Sequence[str] = DEFAULT_RECIPES) -> dict:
    """Run every recipe against a running server (explicit model-control mode, all models loaded);
    raw CSVs, logs and compacted profile exports go under `out_dir/raw/`. Returns a JSON-ready dict:
    {"tool", "perf_analyzer", "grpc_url", "smoke", "wall_s", "errors": [...],
     "recipes": {name: {"model", "description", "runs": [{"batching", "concurrency", ...} or {..., "error"}]}}}.
    A point that failed twice carries `error` and is listed in `errors`; the rest still run."""
    analyzer = find_perf_analyzer()
    loaded = load_recipes(smoke=smoke, names=recipes)
    client = _client(grpc_url)
    for recipe in loaded:
        if not client.is_model_ready(recipe.model):
            raise PerfAnalyzerError(f"{recipe.model} is not ready on {grpc_url}: "
                                    "start the server with every model loaded")
    client.close()
    raw_root = Path(out_dir) / "raw"
    raw_root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = {recipe.name: run_recipe(analyzer, recipe, grpc_url, raw_root) for recipe in loaded}
    errors = [f"{name} {run['batching']} c={run['concurrency']}: {run['error'].splitlines()[0]}"
              for name, result in results.items() for run in result["runs"] if "error" in run]
    return {"tool": "perf_analyzer", "perf_analyzer": str(analyzer.binary),
            "tritonclient": importlib.metadata.version("tritonclient"), "grpc_url": grpc_url, "smoke": smoke,
            "wall_s": round(time.monotonic() - started, 2), "errors": errors, "recipes": results}


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tritone.benchmarks.perf_analyzer", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC host:port")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    parser.add_argument("--smoke", action="store_true", help="concurrency 1 and 2, small windows")
    parser.add_argument("--family", choices=registry.choices(), default=registry.default_family(),
                        help="the family's recipes (a registered family or its label: music, speech)")
    parser.add_argument("--recipe", action="append", choices=ALL_RECIPES, help="run only these (repeatable)")
    args = parser.parse_args(argv)
    try:
        results = run_perf_analyzer_suite(args.url, args.out, smoke=args.smoke,
                                          recipes=args.recipe or FAMILY_RECIPES[registry.family_named(args.family)])
    except (PerfAnalyzerNotInstalled, PerfAnalyzerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "perf_analyzer.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
