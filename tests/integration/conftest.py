"""A real tritonserver on CPU serving a tiny-random MusicGen export, shared by the session's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.triton import TritonServer, free_port

from .musicgen_server import CAPACITY, tiny_repository


@pytest.fixture(scope="session")
def musicgen_repository(tmp_path_factory) -> Path:
    return tiny_repository(tmp_path_factory.mktemp("musicgen"), **CAPACITY)


@pytest.fixture(scope="session")
def musicgen_server(musicgen_repository, tmp_path_factory):
    server = TritonServer()
    server.start(
        musicgen_repository,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        model_config_name="cpu",
        log_file=tmp_path_factory.mktemp("logs") / "tritonserver.log",
    )
    try:
        server.wait_ready(timeout=180)
        yield server
    finally:
        server.stop()
