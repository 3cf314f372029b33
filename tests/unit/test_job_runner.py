"""JobRunner's lifecycle without Triton: stopping always ends its workers, whatever they were waiting on."""

from __future__ import annotations

import asyncio

import pytest

from tritone.gateway.job_runner import JobRunner
from tritone.gateway.job_store import JobStore
from tritone.gateway.metrics import GatewayMetrics
from tritone.gateway.settings import Settings


@pytest.mark.parametrize("ticks", range(6))
def test_stop_ends_the_workers_even_right_after_a_wake_up(tmp_path, ticks):
    """A job queued just before shutdown wakes the idle workers; stop() lands `ticks` loop iterations later.
    asyncio.wait_for (3.11) returns its result when the awaited event fired in the same tick as the
    cancellation, swallowing it: a worker then polled on forever and the gateway never stopped (CI hang)."""
    store = JobStore(tmp_path)
    settings = Settings(data_dir=tmp_path, job_workers=4, job_ttl_s=0)
    runner = JobRunner(store, triton=None, metrics=GatewayMetrics(), settings=settings)

    async def scenario():
        await runner.start()
        await asyncio.sleep(0.05)  # every worker found the queue empty and waits for a wake-up
        runner.notify()
        for _ in range(ticks):
            await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await runner.stop()
        return runner._workers

    try:
        assert asyncio.run(scenario()) == []
    finally:
        store.close()
