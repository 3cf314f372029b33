"""Two gateways (replicas) on one PostgreSQL and a real tritonserver: a job whose gateway dies after some of its
windows is taken over by the other once the lease expires, continued after the stored windows, and its audio
is exactly that of the same job run undisturbed."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from contextlib import asynccontextmanager

import httpx

import numpy as np
import pytest
import soundfile

from tritone.gateway import job_store as js
from tritone.gateway.job_store import JobStore
from tritone.gateway.main import create_app
from tritone.gateway.settings import Settings

from .test_gateway_jobs import SAMPLE_RATE, gateway, has_status, submit, wait_for

pytestmark = pytest.mark.integration

DURATION = 50.0  # two windows of MusicGen's 30 s limit: 30 s, then 20 s on 10 s of context
WINDOWS = 2
LEASE_S = 1.5


@asynccontextmanager
async def replica(server, data_dir, **overrides):
    """A gateway app with its lifespan running, and a client for it."""
    app = create_app(Settings(triton_grpc_url=server.grpc_url, triton_metrics_url=server.metrics_url,
                              data_dir=data_dir, **overrides))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client:
            yield app, client


def die(app) -> None:
    """The gateway stops at once: its workers and jobs are cancelled and nothing is released or written."""
    runner = app.state.job_runner
    for task in (*runner._workers, *runner._running.values()):
        task.cancel()
    runner._running.clear()  # the lifespan's stop() then has no job to release: the lease just expires


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
def test_a_job_of_a_dead_gateway_is_finished_by_another_with_the_same_audio(triton_stack, tmp_path, database):
    url = database.url.render_as_string(hide_password=False)
    store = JobStore(database)

    async def undisturbed() -> bytes:
        async with gateway(triton_stack, tmp_path / "alone") as client:  # its own SQLite database
            job = await submit(client, duration=DURATION, seed=11)
            await wait_for(client, job["id"], has_status("succeeded"), timeout=180)
            return (await client.get(f"/v1/jobs/{job['id']}/audio")).content

    async def taken_over():
        shared = dict(database_url=url, job_lease_s=LEASE_S, job_workers=1)
        async with replica(triton_stack, tmp_path / "a", replica_id="gateway-a", **shared) as (app_a, a):
            job = await submit(a, duration=DURATION, seed=11)
            deadline = time.monotonic() + 120
            while len(store.parts(job["id"])) < 1:  # a window is stored: now gateway a dies
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            die(app_a)
            at_death = store.parts(job["id"])
            lease_a = store.get(job["id"])
        assert lease_a.status == js.RUNNING
        async with gateway(triton_stack, tmp_path / "b", replica_id="gateway-b", **shared) as b:
            done = await wait_for(b, job["id"], has_status("succeeded", "failed"), timeout=180)
            audio = (await b.get(f"/v1/jobs/{job['id']}/audio")).content
        return job["id"], at_death, done, audio

    lines: list[str] = []
    handler = logging.Handler()  # the gateway's logger does not propagate (serving/log_format.py)
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("tritone.gateway").addHandler(handler)
    try:
        alone = asyncio.run(undisturbed())
        job_id, at_death, done, audio = asyncio.run(taken_over())
    finally:
        logging.getLogger("tritone.gateway").removeHandler(handler)
        store.close()
    assert done["status"] == "succeeded" and done["progress"] == 100, done
    assert 1 <= len(at_death) < WINDOWS  # gateway a died with some windows stored, not all
    assert [part.index for part in at_death] == list(range(len(at_death)))
    seconds = sum(part.seconds for part in at_death)
    assert f"job {job_id}: continuing after window {len(at_death)} of {WINDOWS} ({seconds:.1f} s stored)" in lines
    expected, rate = soundfile.read(io.BytesIO(alone), dtype="float32")
    got, rate_b = soundfile.read(io.BytesIO(audio), dtype="float32")
    assert rate == rate_b == SAMPLE_RATE and len(got) == len(expected) == DURATION * SAMPLE_RATE
    np.testing.assert_array_equal(got, expected)  # continued from the stored windows' codes: the same audio
