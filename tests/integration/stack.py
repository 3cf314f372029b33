"""Helpers for tests against a real tritonserver serving tiny-random MusicGen and Orpheus exports."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from tritone.client.metrics import read_engine_metrics
from tritone.ensemble import tensors as T
from tritone.ensemble.families import FAMILIES
from tritone.ensemble.triton.spec import write_config
from tritone.serving.container import sync_skeleton
from tritone.gateway.settings import Settings
from tritone.serving.triton import TritonServer, free_port

# The served codes are compared with ONNX Runtime float32 references: the tests pin the LM there (the CPU
# target's `dtype: auto` is bfloat16 on torch on a CPU with AVX512-BF16 or AMX: ensemble/engine/lm_choice.py).
FLOAT32 = {"lm_runtime": "onnxruntime", "dtype": "float32"}
# Small capacity so the tests can fill it: 4 decode slots, 4 waiting requests.
CAPACITY = {"max_slots": "4", "max_queue": "4", **FLOAT32}
# Speech: the same capacity; chunks of at most 4 frames (28 steps) so that a stream's chunk rhythm
# is fine enough to see a stall; prefill 16 tokens per step.
ORPHEUS = {**CAPACITY, "max_chunk_frames": "4", "prefill_chunk": "16"}
# Chatterbox: the same capacity; chunks of at most 8 tokens (0.32 s) so that short streams have seams.
CHATTERBOX = {**CAPACITY, "max_chunk_frames": "8", "first_frames": "4"}


def tiny_repository(root: Path, **parameters: dict[str, str]) -> Path:
    """Copy the committed repository (configs, model.py) and export every registered family's tiny-random
    checkpoint into it. A keyword named for a family overrides parameters of its pipeline's CPU config
    (e.g. its capacity): `tiny_repository(root, musicgen={"max_slots": "4"})`."""
    unknown = set(parameters) - set(FAMILIES)
    assert not unknown, f"no family named {sorted(unknown)} (registered: {sorted(FAMILIES)})"
    repository = root / "model_repository"
    sync_skeleton(repository)
    for family in FAMILIES.values():
        family.export("tiny-random", repository, force=True)
        if family.name in parameters:
            write_config(repository, family.models()[-1], "cpu", parameters[family.name])  # the pipeline
    return repository


def read_metrics(server, model: str = T.MUSICGEN) -> dict[str, float]:
    """One engine's counters (both engines share the server)."""
    return read_engine_metrics(server.metrics_url, model)


@contextmanager
def run_gateway(settings):
    """Serve the gateway app with uvicorn in a thread; yields its base URL."""
    import uvicorn

    from tritone.gateway.main import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def own_stack(repository: Path, tmp_path: Path, models: tuple[str, ...] = ("*",), **settings):
    """A tritonserver of the test's own, loading `models`, and a gateway in front of it: for tests that kill,
    unload or reload models, which must not touch the server the other tests share."""
    server = TritonServer()
    server.start(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                 model_config_name="cpu", model_control_mode="explicit", load_models=list(models),
                 log_file=tmp_path / "tritonserver.log")
    try:
        server.wait_ready(timeout=180)
        gateway = Settings(triton_grpc_url=server.grpc_url, triton_metrics_url=server.metrics_url,
                           triton_http_url=f"http://{server.http_url}", data_dir=tmp_path / "gateway", **settings)
        with run_gateway(gateway) as url:
            yield server, url
    finally:
        server.stop()


class PausedModel:
    """One python-backend model's stub process(es) of a running server, stopped and continued with SIGSTOP /
    SIGCONT: its engine freezes wherever it is while Triton and the gateway go on (a stream stays open with
    nothing more to send). Continued on leaving the `with` block, whatever happened inside."""

    def __init__(self, server, model: str):
        self.pids = [pid for pid in _children(server.pid) if _is_stub_of(pid, model)]
        assert self.pids, f"no python backend stub of model {model!r} under tritonserver {server.pid}"
        self.paused = threading.Event()

    def pause(self) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        self.paused.set()

    def resume(self) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGCONT)
        self.paused.clear()

    def __enter__(self) -> "PausedModel":
        return self

    def __exit__(self, *exc) -> None:
        self.resume()


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return children


def _is_stub_of(pid: int, model: str) -> bool:
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"triton_python_backend_stub") and len(argv) > 1 and \
        f"/{model}/".encode() in argv[1]


def family_models(name: str) -> tuple[str, ...]:
    """The Triton models of one registered family."""
    return tuple(spec.name for spec in FAMILIES[name].models())
