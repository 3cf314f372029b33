"""A streamed generation ends when its client hangs up, also while it has nothing to send yet."""

from __future__ import annotations

import asyncio

import pytest

from tritone.gateway.metrics import GatewayMetrics
from tritone.gateway.streaming import GenerationStream


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])  # 2.4: Starlette relies on a failing send alone
def test_a_hang_up_before_the_first_body_byte_finishes_the_generation(spec_version):
    finished, sent = [], []

    async def silent_body():  # a FLAC body: nothing until generation ends
        await asyncio.Event().wait()
        yield b"never"

    async def finish():
        finished.append(True)

    async def receive():
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message["type"])

    async def main():
        response = GenerationStream(silent_body(), finish, GatewayMetrics(), media_type="audio/flac", headers={})
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}}
        await asyncio.wait_for(response(scope, receive, send), timeout=5)

    asyncio.run(main())
    assert finished == [True]
    assert sent == ["http.response.start"]  # no body: the client is gone, nothing says it ended
