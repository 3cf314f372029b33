"""Helpers for tests against a real tritonserver serving a tiny-random MusicGen export."""

from __future__ import annotations

import dataclasses
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from client.metrics import read_engine_metrics
from ensemble import musicgen_spec, tensors as T
from ensemble.spec import CONFIG_PATHS, render
from export.musicgen import export_musicgen
from serving.container import sync_skeleton
from serving.triton import free_port

# Small capacity so the tests can fill it: 4 decode slots, 4 waiting requests.
CAPACITY = {"max_slots": "4", "max_queue": "4"}


def tiny_repository(root: Path, **parameters: str) -> Path:
    """Copy the committed repository (configs, model.py), export tiny-random into it."""
    repository = root / "model_repository"
    sync_skeleton(repository)
    export_musicgen("tiny-random", repository, force=True)
    if parameters:
        pipeline = musicgen_spec.PIPELINE
        cpu = pipeline.targets["cpu"]
        cpu = dataclasses.replace(cpu, parameters={**cpu.parameters, **parameters})
        pipeline = dataclasses.replace(pipeline, targets={**pipeline.targets, "cpu": cpu})
        (repository / T.MUSICGEN / CONFIG_PATHS["cpu"]).write_text(render(pipeline, "cpu"))
    return repository


def read_metrics(server) -> dict[str, float]:
    return read_engine_metrics(server.metrics_url)


@contextmanager
def run_gateway(settings):
    """Serve the gateway app with uvicorn in a thread; yields its base URL."""
    import uvicorn

    from gateway.main import create_app

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
