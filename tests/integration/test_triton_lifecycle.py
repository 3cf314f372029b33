"""Models unload, Triton restarts and everything stops in seconds: `python -m tritone.serving` as `make serve`
runs it (tritonserver + gateway, supervised), on this module's own ports, killed and stopped here.

Before the fixes these failed: a stream the client cancelled after its final response kept its model
referenced in Triton 2.51 (unload never finished, a stop waited its 30 s exit timeout and left
/dev/shm regions), and nothing restarted a dead tritonserver or gateway.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tritone.client import MusicRequest, SpeechRequest
from tritone.client.speech import stream_speech
from tritone.client.stream import stream_music
from tritone.ensemble import tensors as T
from tritone.serving.triton import free_port
from tritone.serving.processes import alive, children, command_line, group_members

from .stack import CAPACITY

pytestmark = pytest.mark.integration
IDLE_STOP_S = 5.0
SHM = Path("/dev/shm")


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def post(url: str, timeout: float = 60.0) -> int:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def wait_for(condition, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


class Supervised:
    """`python -m tritone.serving ... --gateway-port` as a child of the test, with its output in a file."""

    def __init__(self, repository: Path, log: Path):
        self.ports = {name: free_port() for name in ("http", "grpc", "metrics", "gateway")}
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tritone.serving", "--model-repository", str(repository), "--model-config-name", "cpu",
             "--model-control-mode", "explicit", "--load-model", "*", "--http-port", str(self.ports["http"]),
             "--grpc-port", str(self.ports["grpc"]), "--metrics-port", str(self.ports["metrics"]),
             "--gateway-port", str(self.ports["gateway"]), "--drain-timeout", "10"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def triton(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tritonserver(self) -> int | None:
        found = [pid for pid in children(self.process.pid) if "tritonserver" in command_line(pid).split(" ")[0]]
        return found[0] if found else None

    def gateway_pid(self) -> int | None:
        found = [pid for pid in children(self.process.pid) if "-m tritone.gateway" in command_line(pid)]
        return found[0] if found else None

    def stubs(self, model: str) -> list[int]:
        server = self.tritonserver()
        return [pid for pid in children(server) if f"/{model}/1/model.py" in command_line(pid)] if server else []

    def ready(self) -> bool:
        return get(f"{self.triton}/v2/health/ready")[0] == 200 and get(f"{self.gateway}/healthz")[0] == 200

    def model_state(self, model: str) -> str:
        request = urllib.request.Request(f"{self.triton}/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            states = {entry["name"]: entry.get("state") for entry in json.loads(response.read())}
        return states.get(model, "UNAVAILABLE")


@pytest.fixture(scope="module")
def supervised(tiny_model_repository, tmp_path_factory):
    stack = Supervised(tiny_model_repository, tmp_path_factory.mktemp("serving") / "serving.log")
    try:
        assert wait_for(stack.ready, 180, 0.25), stack.output()[-3000:]
        yield stack
    finally:
        if stack.process.poll() is None:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()
        for pid in [stack.tritonserver(), stack.gateway_pid()]:
            if pid:
                os.killpg(pid, signal.SIGKILL)


async def music(url: str, count: int, duration: float, cancel_after: int | None = None) -> list[int]:
    """`count` concurrent streams; each returns its number of samples (it stops early after `cancel_after` chunks)."""

    async def one(seed: int) -> int:
        samples, chunks = 0, 0
        stream = stream_music(url, MusicRequest(f"prompt {seed}", duration=duration, seed=seed))
        async for chunk in stream:
            samples, chunks = samples + len(chunk.audio), chunks + 1
            if chunks == cancel_after:
                await stream.aclose()
                break
        return samples

    return await asyncio.gather(*(one(seed) for seed in range(count)))


def test_a_model_unloads_after_serving_finished_cancelled_and_queued_streams(supervised):
    slots = int(CAPACITY["max_slots"])
    finished = asyncio.run(music(supervised.grpc, slots + 2, duration=2))  # two wait for a slot
    assert finished == [2 * 32000] * (slots + 2)
    asyncio.run(music(supervised.grpc, 2, duration=10, cancel_after=1))
    stubs = supervised.stubs(T.MUSICGEN)
    assert len(stubs) == 1

    started = time.monotonic()
    assert post(f"{supervised.triton}/v2/repository/models/{T.MUSICGEN}/unload") == 200
    assert wait_for(lambda: supervised.model_state(T.MUSICGEN) == "UNAVAILABLE", 15), supervised.model_state(T.MUSICGEN)
    assert wait_for(lambda: not alive(stubs[0]), 10), "the unloaded model's stub is still running"
    print(f"musicgen unloaded in {time.monotonic() - started:.2f} s")

    assert post(f"{supervised.triton}/v2/repository/models/{T.MUSICGEN}/load") == 200
    assert len(supervised.stubs(T.MUSICGEN)) == 1  # one instance, the old one gone


def test_speech_unloads_after_multi_sentence_requests(supervised):
    async def speak() -> int:
        samples = 0
        async for chunk in stream_speech(supervised.grpc, SpeechRequest("Hello there. How are you? Fine.", seed=1)):
            samples += len(chunk.audio)
        return samples

    for _ in range(3):
        assert asyncio.run(speak()) > 0
    stubs = supervised.stubs(T.ORPHEUS)
    assert post(f"{supervised.triton}/v2/repository/models/{T.ORPHEUS}/unload") == 200
    assert wait_for(lambda: supervised.model_state(T.ORPHEUS) == "UNAVAILABLE", 15), supervised.model_state(T.ORPHEUS)
    assert wait_for(lambda: not any(alive(pid) for pid in stubs), 10)
    assert post(f"{supervised.triton}/v2/repository/models/{T.ORPHEUS}/load") == 200


def test_a_killed_tritonserver_is_restarted_and_the_gateway_keeps_running(supervised):
    server, gateway = supervised.tritonserver(), supervised.gateway_pid()
    os.killpg(server, signal.SIGKILL)
    assert wait_for(lambda: supervised.tritonserver() not in (None, server), 15), supervised.output()[-2000:]
    assert "tritonserver exited with code -9" in supervised.output()
    assert wait_for(supervised.ready, 120, 0.25)
    assert supervised.gateway_pid() == gateway  # never restarted: it reconnects by itself
    assert wait_for(lambda: get(f"{supervised.gateway}/readyz")[0] == 200, 30)


def test_a_killed_gateway_is_restarted(supervised):
    gateway = supervised.gateway_pid()
    os.kill(gateway, signal.SIGKILL)
    assert wait_for(lambda: supervised.gateway_pid() not in (None, gateway), 15)
    assert "gateway exited with code -9" in supervised.output()
    assert wait_for(lambda: get(f"{supervised.gateway}/healthz")[0] == 200, 30)


def test_a_stop_after_queued_streams_ends_everything_within_seconds_and_frees_shared_memory(supervised):
    slots = int(CAPACITY["max_slots"])
    asyncio.run(music(supervised.grpc, slots + 3, duration=2))  # some wait for a slot: this used to hang the stop
    server, gateway = supervised.tritonserver(), supervised.gateway_pid()
    regions = {path.name for path in SHM.glob("triton_python_backend_shm_region_*")
               if any(path.name in command_line(pid) for pid in children(server))}
    assert regions, "the python stubs name their shared-memory regions"

    started = time.monotonic()
    supervised.process.send_signal(signal.SIGTERM)
    supervised.process.wait(timeout=30)
    took = time.monotonic() - started
    print(f"stopped in {took:.2f} s")
    assert took <= IDLE_STOP_S, supervised.output()[-2000:]
    assert supervised.process.returncode == 0
    assert not group_members(server) and not group_members(gateway)
    assert not [name for name in regions if (SHM / name).exists()]
