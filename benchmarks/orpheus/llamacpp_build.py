"""llama.cpp's `llama-server`, built here from the source the llama-cpp-python sdist vendors, for
the speech benchmark's llama.cpp phase (benchmarks/orpheus/llamacpp.py).

    python -m tritone.benchmarks.orpheus.llamacpp_build [--jobs 2] [--force]   (or `make llamacpp`)

Steps, each named in the error when it fails (the benchmark reports that name and the reason):

1. `download`: `pip download llama-cpp-python==VERSION --no-deps --no-binary :all:` (the sdist,
   through pip's configured index) into .cache/llamacpp/;
2. `extract`: its vendor/llama.cpp tree (the source, convert_hf_to_gguf.py and gguf-py);
3. `configure`: cmake, Release, the server and nothing else that is optional (no tests, examples,
   web UI download, OpenSSL, curl), GGML_NATIVE=ON (the machine's own SIMD: AVX2, AVX512, AMX),
   static libraries so that the binary stands alone;
4. `build`: `cmake --build --target llama-server -j JOBS`;
5. `install`: the binary copied to .cache/llamacpp/bin/llama-server with build.json beside it
   (version, cmake options, seconds per step).

A binary already there is kept (the steps are skipped) unless --force.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "llamacpp"
VERSION = "0.3.36"  # llama-cpp-python; its sdist vendors the llama.cpp source
SDIST = f"llama_cpp_python-{VERSION}"
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",  # the server is one of llama.cpp's tools; only its target is built
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_UI=OFF",  # the web UI needs npm, or a download from the Hugging Face hub
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DGGML_NATIVE=ON",
    "-DBUILD_SHARED_LIBS=OFF",
)
STEPS = ("download", "extract", "configure", "build", "install")


class BuildFailed(RuntimeError):
    """A step of the build failed: `step` is its name (STEPS), the message says why."""

    def __init__(self, step: str, reason: str):
        super().__init__(f"llama.cpp build step {step!r} failed: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class Build:
    """Where a build lives: the cache directory, and what is in it once built."""

    cache: Path = CACHE
    timings: dict = field(default_factory=dict)

    @property
    def sdist(self) -> Path:
        return self.cache / f"{SDIST}.tar.gz"

    @property
    def source(self) -> Path:
        return self.cache / SDIST / "vendor" / "llama.cpp"

    @property
    def build_dir(self) -> Path:
        return self.cache / "build"

    @property
    def binary(self) -> Path:
        return self.cache / "bin" / "llama-server"

    @property
    def info_file(self) -> Path:
        return self.cache / "bin" / "build.json"

    @property
    def converter(self) -> Path:
        return self.source / "convert_hf_to_gguf.py"

    def info(self) -> dict | None:
        """build.json of the installed binary, or None when there is none."""
        try:
            return json.loads(self.info_file.read_text()) if self.binary.is_file() else None
        except (OSError, ValueError):
            return None


def _run(step: str, command: list[str], log, cwd: Path | None = None, timeout: float = 7200) -> None:
    log(f"  {step}: {' '.join(map(str, command))}")
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as error:
        raise BuildFailed(step, f"{command[0]} not found ({error})") from None
    except subprocess.TimeoutExpired:
        raise BuildFailed(step, f"did not finish in {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise BuildFailed(step, f"exit status {done.returncode}: " + " | ".join(tail))


def build(cache: Path = CACHE, jobs: int = 2, force: bool = False, log=print) -> Build:
    """Every step not already done; raises BuildFailed naming the step that failed."""
    b = Build(Path(cache))
    if b.binary.is_file() and b.converter.is_file() and not force:
        log(f"llama-server already built: {b.binary}")
        return b
    b.cache.mkdir(parents=True, exist_ok=True)

    def timed(step, action):
        t0 = time.perf_counter()
        action()
        b.timings[step] = round(time.perf_counter() - t0, 1)

    def download():
        if b.sdist.is_file():
            return
        _run("download", [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={VERSION}", "--no-deps",
                          "--no-binary", ":all:", "-d", str(b.cache)], log)
        if not b.sdist.is_file():
            raise BuildFailed("download", f"pip did not write {b.sdist.name}")

    def extract():
        if b.converter.is_file() and (b.source / "CMakeLists.txt").is_file():
            return
        try:
            with tarfile.open(b.sdist) as archive:
                archive.extractall(b.cache, filter="data")
        except (OSError, tarfile.TarError) as error:
            raise BuildFailed("extract", f"{b.sdist.name}: {error}") from None
        if not (b.source / "CMakeLists.txt").is_file():
            raise BuildFailed("extract", f"{b.sdist.name} has no vendor/llama.cpp/CMakeLists.txt")

    def configure():
        if shutil.which("cmake") is None:
            raise BuildFailed("configure", "cmake not found (apt-get install cmake build-essential)")
        _run("configure", ["cmake", "-S", str(b.source), "-B", str(b.build_dir), *CMAKE_OPTIONS], log)

    def compile_():
        _run("build", ["cmake", "--build", str(b.build_dir), "--target", "llama-server", "-j", str(jobs)], log)

    def install():
        built = b.build_dir / "bin" / "llama-server"
        if not built.is_file():
            raise BuildFailed("install", f"the build wrote no {built}")
        b.binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, b.binary)
        b.info_file.write_text(json.dumps({
            "llama_cpp_python": VERSION, "cmake_options": list(CMAKE_OPTIONS), "jobs": jobs,
            "machine": platform.machine(), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": b.timings}, indent=2) + "\n")

    for step, action in zip(STEPS, (download, extract, configure, compile_, install)):
        log(f"llama.cpp: {step} ...")
        timed(step, action)
    log(f"llama-server built in {sum(b.timings.values()):.0f} s: {b.binary}")
    return b


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritone.benchmarks.orpheus.llamacpp_build",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--force", action="store_true", help="build again even when the binary is there")
    args = parser.parse_args(argv)
    try:
        build(args.cache, args.jobs, args.force)
    except BuildFailed as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
