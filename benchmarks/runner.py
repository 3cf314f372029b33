"""One benchmark run: tritone (perf_analyzer, the streaming load generator) against a running
server, then, with the server stopped, the engine's step cost and transformers' baselines.

Every registered family's suite (benchmarks/<name>/suite.py, found through the registry: see
benchmarks/registry.py) shares what is here: the model repository, the server, the machine's
description, the phases, perf_analyzer. A suite takes any running server (`grpc_url`,
`metrics_url`): the CLI starts its own (`triton_server`, loading the family's models), the smoke
tests pass the test session's.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tritone.ensemble.engine.cpu_features import CpuFeatures
from tritone.ensemble.engine.lm_choice import resolve_lm
from tritone.benchmarks import registry, report
from tritone.ensemble.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("tiny-random", "small-random")


def level_list(text: str) -> list[int]:
    """An argparse type: comma-separated levels (concurrency, batch sizes), each >= 1."""
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not levels or any(n < 1 for n in levels):
        raise argparse.ArgumentTypeError(f"levels must be >= 1, got {text!r}")
    return levels


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Configurable:
    """A family's benchmark configuration: the published run's defaults, SMOKE's for --smoke."""

    SMOKE: dict = {}

    @classmethod
    def create(cls, model: str, smoke: bool = False, **overrides):
        """Defaults for the published run, or the smoke run's (seconds, not speed); None overrides nothing."""
        config = cls(model=model, smoke=smoke)
        if smoke:
            config = replace(config, **cls.SMOKE)
        return replace(config, **{k: v for k, v in overrides.items() if v is not None})


# --- where and on what -------------------------------------------------------------------------


def machine_info() -> dict:
    info = {"cpu_model": None, "cores": cores(), "logical_cpus": os.cpu_count(), "memory_gib": None,
            "platform": platform.platform(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
        info["load_average"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        pass
    info["cpu_model"] = info["cpu_model"] or platform.processor() or None
    info["cpu_flags"] = CpuFeatures.detect().describe()["flags"]  # AVX2, AVX512-BF16, AMX: what the LM step can use
    info["lm_auto"] = str(resolve_lm("auto", "cpu", "auto"))  # what `lm_runtime: auto, dtype: auto` runs here
    versions = {}
    for package in ("onnxruntime", "torch", "transformers", "numpy", "tritonclient", "nvidia-pytriton"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    info["packages"] = versions
    return info


def cpu_busy(interval: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over `interval` seconds (/proc/stat): what else is running."""

    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1.0 - (idle1 - idle0) / (total1 - total0), 3) if total1 > total0 else None


def git_info(root: Path = ROOT) -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def server_info(grpc_url: str, model: str) -> dict:
    """Triton's version and the pipeline's served parameters (its capacity, chunking, ...)."""
    from tritonclient.grpc import InferenceServerClient

    client = InferenceServerClient(grpc_url)
    try:
        metadata = client.get_server_metadata(as_json=True)
        config = client.get_model_config(model, as_json=True)["config"]
    finally:
        client.close()
    parameters = {k: v.get("string_value") for k, v in config.get("parameters", {}).items()}
    return {"triton_version": metadata.get("version"), "grpc_url": grpc_url,
            "max_slots": parameters.get("max_slots"), "max_queue": parameters.get("max_queue"),
            f"{model}_parameters": parameters}


# --- the model repository and the server ---------------------------------------------------------


def prepare_repository(model: str, work_dir: Path, log=print, family: str | None = None) -> Path:
    """The committed repository's configs and glue copied into `work_dir`, `model` of `family` (a
    registered family's name; the first registered when None) exported there (the export says
    so and stops when the directory already holds it). Every family shares the directory."""
    from tritone.serving.container import sync_skeleton

    family = family or registry.default_family()
    repository = Path(work_dir) / "model_repository"
    sync_skeleton(repository)
    log(f"exporting {family} {model} into {repository} (kept when it is already there) ...")
    FAMILIES[family].export(model, repository)
    return repository


@contextmanager
def triton_server(repository: Path, log_file: Path, timeout: float = 1200.0, log=print, models=("*",)):
    """A tritonserver as `make serve` runs it (CPU configs, explicit model control) on free ports,
    with `models` loaded (registry.models(family): only what the benchmark calls); stopped on exit."""
    from tritone.serving.triton import TritonServer, free_port

    server = TritonServer()
    server.start(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                 model_config_name="cpu", model_control_mode="explicit", load_models=list(models),
                 log_file=log_file)
    try:
        log(f"starting tritonserver (gRPC {server.grpc_url}, log {log_file}) ...")
        server.wait_ready(timeout=timeout)
        yield server
    finally:
        server.stop()


# --- the run ---------------------------------------------------------------------------------


def _perf_analyzer(grpc_url: str, out_dir: Path, smoke: bool, log, family: str) -> dict:
    try:
        from tritone.benchmarks.perf_analyzer import FAMILY_RECIPES, run_perf_analyzer_suite
    except ImportError as error:
        return {"status": "skipped", "reason": f"benchmarks.perf_analyzer not importable: {error}"}
    log(f"perf_analyzer suite ({family} recipes) ...")
    try:
        result = run_perf_analyzer_suite(grpc_url, out_dir, smoke, FAMILY_RECIPES[family])
    except Exception as error:  # e.g. the binary or a library it links is missing: say so, go on
        log(f"  perf_analyzer: {type(error).__name__}: {error}")
        return {"status": "error", "reason": f"{type(error).__name__}: {error}"}
    if result.get("errors"):
        log(f"  perf_analyzer errors: {result['errors']}")
    return {"status": "ok", "result": result}


class SuiteRun:
    """What every family's suite shares: progress lines with the elapsed time, the machine and
    how busy it was, the results' header, timed phases, perf_analyzer."""

    def __init__(self, log=print):
        self.started = time.perf_counter()
        self.log = log
        self.machine = machine_info()
        self.machine["cpu_busy"] = {}
        self.phases: dict[str, float] = {}

    def say(self, message: str) -> None:
        self.log(f"[{time.perf_counter() - self.started:6.0f} s] {message}")

    def check_quiet(self, when: str) -> None:
        """Sample how busy the CPUs are while nothing of ours runs; warn when something else is."""
        busy = cpu_busy()
        self.machine["cpu_busy"][when] = busy
        if busy is not None and busy > report.BUSY:
            self.say(f"warning: {busy:.0%} of the CPU is busy {when} with nothing of this run working: something "
                     f"else is running, and the numbers will be slower than this machine can do")

    def begin(self, config, exported: str, family: str, grpc_url: str, out_dir: Path) -> dict:
        """Check that the repository holds config.model (`exported`: its checkpoint), sample how busy
        the CPUs are, start the results (header, server) and run perf_analyzer over the recipes of
        `family` (a registered family's name)."""
        if exported != config.model:
            raise ValueError(f"the repository holds a {family} export of {exported}, not {config.model}")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self.check_quiet("before tritone")
        results = self.header(config, server_info(grpc_url, registry.models(family)[-1]), registry.label(family))
        results["perf_analyzer"] = self.perf_analyzer(config, grpc_url, Path(out_dir) / "perf_analyzer", family)
        return results

    def go_local(self, stop_server: Callable[[], object] | None) -> None:
        """Stop the server, so that nothing else competes for the cores, and sample them."""
        if stop_server is not None:
            self.say("stopping tritonserver (the rest runs locally, without it)")
            stop_server()
        self.check_quiet("before the local measurements")

    def header(self, config, server: dict, label: str) -> dict:
        return {
            "schema": 1,
            "family": label,
            "model": config.model,
            "smoke": config.smoke,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": self.machine,
            "git": git_info(),
            "config": config.as_json(),
            "server": server,
            "phases_s": self.phases,
        }

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(time.perf_counter() - t0, 2)

    def perf_analyzer(self, config, grpc_url: str, out_dir: Path, family: str) -> dict:
        """The family's recipes (their smoke settings for a smoke run or config.perf_analyzer_smoke)."""
        with self.phase("perf_analyzer"):
            if not config.perf_analyzer:
                return {"status": "disabled"}
            return _perf_analyzer(grpc_url, out_dir, config.smoke or config.perf_analyzer_smoke, self.say, family)

    def finish(self, results: dict, out_dir: Path) -> dict:
        """Total time, then the files (results.json merged with the other family's section)."""
        self.phases["total"] = round(time.perf_counter() - self.started, 2)
        files = report.write_results(results, out_dir)
        for target in results["targets"]:
            value = "-" if target["value"] is None else f"{target['value']:.3g}x"
            self.say(f"target: {target['target']}: {value} -> {report.verdict(target)}")
        self.say(f"wrote {', '.join(str(p) for p in files.values())}")
        return results


def load_results(path: Path) -> dict:
    return json.loads(Path(path).read_text())
