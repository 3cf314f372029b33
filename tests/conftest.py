"""Shared by the integration and browser tests: a real tritonserver on CPU serving a tiny-random
MusicGen and a tiny-random Orpheus export (started once, when a test first asks for it) and
gateways in front of it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tritone.gateway.settings import Settings
from tritone.serving.triton import TritonServer, free_port

from tests.hang_report import report_before
from tests.integration.stack import CAPACITY, CHATTERBOX, ORPHEUS, run_gateway, tiny_repository


@pytest.fixture(autouse=True)
def report_hung_asyncio_tasks(request):
    """Shortly before pytest-timeout fails a test, print what its asyncio tasks wait on (see hang_report)."""
    timeout = float(request.config.getini("timeout") or 0)
    marker = request.node.get_closest_marker("timeout")
    timeout = float(marker.args[0]) if marker and marker.args else timeout
    if timeout <= 20:
        yield
        return
    timer = report_before(timeout - 15)
    yield
    timer.cancel()


@pytest.fixture(scope="session")
def tiny_model_repository(tmp_path_factory) -> Path:
    return tiny_repository(tmp_path_factory.mktemp("repository"), musicgen=CAPACITY, orpheus=ORPHEUS,
                           chatterbox=CHATTERBOX)


@pytest.fixture(scope="session")
def triton_stack(tiny_model_repository, tmp_path_factory):
    server = TritonServer()
    server.start(
        tiny_model_repository,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        model_config_name="cpu",
        model_control_mode="explicit",  # as `make serve`: the gateway can load and unload models
        load_models=["*"],
        log_file=tmp_path_factory.mktemp("logs") / "tritonserver.log",
    )
    try:
        server.wait_ready(timeout=180)
        yield server
    finally:
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
    # Every stream of the session ended with its final flag and no client cancelled a finished RPC (which
    # Triton 2.51 leaks, keeping its model alive): otherwise the stop waits for the 30 s exit timeout.
    assert took < 15, f"the session's tritonserver took {took:.0f} s to stop:\n{server.log_tail(8)}"


@pytest.fixture
def gateway_settings(triton_stack, tmp_path) -> Settings:
    return Settings(triton_grpc_url=triton_stack.grpc_url, triton_metrics_url=triton_stack.metrics_url,
                    triton_http_url=f"http://{triton_stack.http_url}", data_dir=tmp_path / "gateway")


@pytest.fixture
def gateway_url(gateway_settings):
    """A real gateway (uvicorn on a free port) in front of the session's tritonserver."""
    with run_gateway(gateway_settings) as url:
        yield url


# --- the gateway's database: SQLite and a real PostgreSQL (tests/postgres.py) -----------------------------------

@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session (about 1 s to start); stopped and removed at its end."""
    from tests.postgres import PostgresServer

    server = PostgresServer()
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres) -> str:
    return postgres.create_database("tritone_tests")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """The gateway's database on each backend, migrated and empty: SQLite in the data dir, or PostgreSQL (one
    database for the session, its tables emptied for each test)."""
    from sqlalchemy import text

    from tritone.gateway.database import Database, default_url
    from tritone.gateway.db_schema import metadata

    if request.param == "sqlite":
        db = Database(default_url(tmp_path), data_dir=tmp_path)
        db.migrate()
    else:
        db = Database(request.getfixturevalue("postgres_url"))
        db.migrate()
        with db.transaction() as connection:
            connection.execute(text(f"TRUNCATE {', '.join(metadata.tables)} RESTART IDENTITY"))
    try:
        yield db
    finally:
        db.close()
