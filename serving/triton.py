"""Run a real NVIDIA Triton Inference Server from the ``nvidia-pytriton`` wheel.

The ``nvidia-pytriton`` wheel ships a complete ``tritonserver`` binary, its
shared libraries and the python backend. This module locates them, prepares a
backend directory the server can use (the python backend needs the
``triton_python_backend_stub`` matching the running Python copied next to
``libtriton_python.so``), and starts/stops the server as a child process::

    with TritonServer() as server:
        server.start("model_repository", model_config_name="cpu")
        server.wait_ready(timeout=120)
        ...  # talk to server.grpc_url / server.http_url

The stub is started by the server with the first ``python`` on ``PATH``; the
environment built here puts ``sys.executable``'s directory first so that the
models run inside the same virtual environment as the caller.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from tritone.serving.processes import group_members

__all__ = [
    "TritonInstallation",
    "TritonServer",
    "TritonServerError",
    "find_tritonserver",
    "free_port",
]

# Triton's own latency quantiles per model (nv_inference_*_summary_us); Triton 2.51 has no latency histograms
METRICS_CONFIG = "--metrics-config=summary_latencies=true"
_DISTRIBUTION = "nvidia-pytriton"
_PACKAGE = "pytriton"
_STUB_NAME = "triton_python_backend_stub"
_DEFAULT_BACKEND_CACHE = Path.home() / ".cache" / "tritone" / "backends"


class TritonServerError(RuntimeError):
    """The server could not be found, started or made ready."""


@dataclasses.dataclass(frozen=True)
class TritonInstallation:
    """Paths needed to run ``tritonserver`` from the ``nvidia-pytriton`` wheel."""

    version: str  # version of the nvidia-pytriton wheel
    binary: Path  # the tritonserver executable
    library_dir: Path  # shared libraries the binary links against
    backend_dir: Path  # prepared --backend-directory (holds python/ with its stub)


def _wheel_paths() -> tuple[str, Path, Path, Path]:
    """Return (version, tritonserver dir, libs dir, stubs dir) from the installed wheel."""
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise TritonServerError(
            f"The '{_DISTRIBUTION}' wheel is not installed; it provides the tritonserver "
            f"binary. Install it with: pip install --no-deps {_DISTRIBUTION}==0.7.0"
        ) from None
    # find_spec does not execute pytriton/__init__.py (whose dependencies may be absent).
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError(f"'{_DISTRIBUTION}' is installed but the '{_PACKAGE}' package is missing")
    server_dir = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    libs_dir = Path(str(dist.locate_file("nvidia_pytriton.libs")))
    return dist.version, server_dir, libs_dir, server_dir / "python_backend_stubs"


def _prepare_backends(source_backends: Path, stubs_dir: Path, target_root: Path, tag: str) -> Path:
    """Copy the wheel's backends plus the matching python stub into ``target_root/tag``.

    The copy is built in a temporary sibling directory and renamed into place, so
    concurrent callers never see a half-written backend directory.
    """
    py_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = stubs_dir / py_version / _STUB_NAME
    if not stub.is_file():
        available = sorted(p.name for p in stubs_dir.iterdir() if p.is_dir()) if stubs_dir.is_dir() else []
        raise TritonServerError(
            f"No {_STUB_NAME} for Python {py_version} in {stubs_dir} (available: {', '.join(available) or 'none'})"
        )
    target = target_root / f"{tag}-py{py_version}"
    if (target / "python" / _STUB_NAME).is_file() and (target / "python" / "libtriton_python.so").is_file():
        return target

    target_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target_root))
    try:
        shutil.copytree(source_backends, staging / "backends", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, staging / "backends" / "python" / _STUB_NAME)
        try:
            os.rename(staging / "backends", target)
        except OSError:
            if not (target / "python" / _STUB_NAME).is_file():  # lost a race only if the winner is complete
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def find_tritonserver(backend_cache_dir: str | os.PathLike[str] | None = None) -> TritonInstallation:
    """Locate ``tritonserver`` from the installed wheel and prepare its backend directory.

    ``backend_cache_dir`` is where the backend directory is prepared (default
    ``~/.cache/tritone/backends``); it is reused across calls.
    """
    version, server_dir, libs_dir, stubs_dir = _wheel_paths()
    binary = server_dir / "bin" / "tritonserver"
    for path, what in ((binary, "tritonserver binary"), (libs_dir, "shared library directory"),
                       (server_dir / "backends" / "python", "python backend")):
        if not path.exists():
            raise TritonServerError(f"The {_DISTRIBUTION} wheel has no {what} at {path}")
    cache = Path(backend_cache_dir) if backend_cache_dir is not None else _DEFAULT_BACKEND_CACHE
    backend_dir = _prepare_backends(server_dir / "backends", stubs_dir, cache, f"pytriton-{version}")
    return TritonInstallation(version=version, binary=binary, library_dir=libs_dir, backend_dir=backend_dir)


def free_port() -> int:
    """Return a TCP port that is free right now on localhost (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_SHM_PREFIX = "triton_python_backend_shm_region_"


def shared_memory_regions(pgid: int) -> set[str]:
    """Names of the python backend's /dev/shm regions of a server's process group: one per python
    stub, named on its command line."""
    regions: set[str] = set()
    for pid in group_members(pgid):
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        regions.update(argument for argument in arguments if argument.startswith(_SHM_PREFIX))
    return regions


def remove_shared_memory(regions: Iterable[str]) -> None:
    for name in regions:
        try:
            (Path("/dev/shm") / name).unlink()
        except FileNotFoundError:
            pass
        except OSError:
            continue


def _prepend(path: str | os.PathLike[str], current: str | None) -> str:
    return os.pathsep.join([os.fspath(path), *([current] if current else [])])


class TritonServer:
    """A ``tritonserver`` child process; use as a context manager to always stop it."""

    def __init__(self, installation: TritonInstallation | None = None, host: str = "127.0.0.1") -> None:
        self.installation = installation or find_tritonserver()
        self.host = host
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle = None
        self._own_log_dir: str | None = None
        self.exit_timeout_s = 30
        self._regions: set[str] = set()  # /dev/shm regions seen held by this server's process group

    # -- addresses -------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle -------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """Environment for the server: wheel libraries loadable, this interpreter first on PATH."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = _prepend(self.installation.library_dir, env.get("LD_LIBRARY_PATH"))
        # The stub links libpython3.X.so.1.0; it must be this interpreter's, or stdlib extension
        # modules (e.g. _ssl, pulled in by transformers) fail with undefined symbols.
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir and any(Path(libdir).glob(f"libpython{sys.version_info.major}.{sys.version_info.minor}*.so*")):
            env["LD_LIBRARY_PATH"] = _prepend(libdir, env["LD_LIBRARY_PATH"])
        env["PATH"] = _prepend(Path(sys.executable).parent, env.get("PATH"))
        return env

    def command(
        self,
        model_repository: str | os.PathLike[str],
        *,
        model_config_name: str | None = None,
        model_control_mode: str | None = None,
        load_models: Iterable[str] = (),
        log_verbose: int = 0,
        exit_timeout_s: int = 30,
        extra_args: Sequence[str] = (),
    ) -> list[str]:
        """The ``tritonserver`` command line for the current ports."""
        cmd = [
            os.fspath(self.installation.binary),
            f"--model-repository={os.fspath(model_repository)}",
            f"--backend-directory={self.installation.backend_dir}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            METRICS_CONFIG,
            f"--log-verbose={log_verbose}",
            f"--exit-timeout-secs={exit_timeout_s}",  # how long a stop waits for running streams
        ]
        if model_config_name:
            cmd.append(f"--model-config-name={model_config_name}")
        if model_control_mode:
            if model_control_mode not in ("none", "explicit", "poll"):
                raise ValueError(f"model_control_mode must be 'none', 'explicit' or 'poll', not {model_control_mode!r}")
            cmd.append(f"--model-control-mode={model_control_mode}")
        cmd += [f"--load-model={name}" for name in load_models]
        cmd += list(extra_args)
        return cmd

    def start(
        self,
        model_repository: str | os.PathLike[str],
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        model_config_name: str | None = None,
        model_control_mode: str | None = None,
        load_models: Iterable[str] = (),
        log_verbose: int = 0,
        log_file: str | os.PathLike[str] | None = None,
        exit_timeout_s: int = 30,
        extra_args: Sequence[str] = (),
    ) -> TritonServer:
        """Start the server (does not wait for readiness; see :meth:`wait_ready`).

        The server's stdout and stderr go to ``log_file`` (default: a file in a
        temporary directory, available as :attr:`log_path`).
        """
        if self.is_running():
            raise TritonServerError(f"tritonserver is already running (pid {self.pid})")
        repository = Path(model_repository)
        if not repository.is_dir():
            raise TritonServerError(f"Model repository {repository} is not a directory")
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        cmd = self.command(
            repository.resolve(),
            model_config_name=model_config_name,
            model_control_mode=model_control_mode,
            load_models=load_models,
            log_verbose=log_verbose,
            exit_timeout_s=exit_timeout_s,
            extra_args=extra_args,
        )
        self.exit_timeout_s = exit_timeout_s
        if log_file is None:
            self._own_log_dir = tempfile.mkdtemp(prefix="tritonserver-")
            self.log_path = Path(self._own_log_dir) / "tritonserver.log"
        else:
            self.log_path = Path(log_file)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            cmd,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() can reach the python stubs too
        )
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def note_shared_memory(self) -> None:
        """Remember the shared-memory regions the server's group holds now: if it is killed, its stubs may be
        gone before `stop` can read their names."""
        if self.is_running():
            self._regions |= shared_memory_regions(self._process.pid)

    def is_ready(self) -> bool:
        """True when ``GET /v2/health/ready`` answers 200."""
        if self.http_port is None:
            return False
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.25) -> None:
        """Block until the server is ready; raise with the log tail if it exits or times out."""
        if self._process is None:
            raise TritonServerError("tritonserver was not started")
        deadline = time.monotonic() + timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {code} before becoming ready. Log tail:\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.stop()
                raise TritonServerError(f"tritonserver not ready after {timeout:.0f}s. Log tail:\n{tail}")
            time.sleep(interval)

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop the server: SIGINT, then SIGKILL to its whole process group after ``timeout``.

        On SIGINT tritonserver stops taking requests and waits up to its exit timeout
        (``exit_timeout_s``) for running streams to end and models to unload; ``timeout``
        defaults to that plus a few seconds. Whatever is left of the group (the server, python
        stubs) is killed, and the python backend's shared-memory regions that the server or its
        stubs held are removed from /dev/shm (a killed server leaves them behind).

        Returns the server's exit code (None if it was never started). Safe to call twice.
        """
        process, self._process = self._process, None
        code = None
        if process is not None:
            regions, self._regions = self._regions | shared_memory_regions(process.pid), set()
            if process.poll() is None:
                try:
                    process.send_signal(signal.SIGINT)
                    code = process.wait(timeout=self.exit_timeout_s + 5 if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    pass
                except ProcessLookupError:
                    pass
            # Kill anything left in the group (the server, or orphaned python stubs), and wait until the
            # kernel has taken them: a SIGKILLed stub holding shared memory can take a moment to go.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            code = process.wait() if code is None else code
            deadline = time.monotonic() + 5.0
            while group_members(process.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            remove_shared_memory(regions | shared_memory_regions(process.pid))
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return code

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort: never leave a server behind
        if getattr(self, "_process", None) is not None:
            self.stop(timeout=5)
